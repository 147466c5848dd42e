# Reads every listed user's INBOX over IMAP or POP3 (Python's imaplib / poplib) and prints one JSON line per
# message: the user, the X-Load-Id header, and the SHA-256 of the message as the client sent it (what follows
# the Return-Path and Received lines the server added). Usage: read_mail.py imap|pop3|login PORT PASSWORD USER...
# `login`: IMAP LOGIN and SELECT only, printing {"user", "ok"} per user (failover probes).
import hashlib, imaplib, json, poplib, re, sys

proto, port, password, users = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
TRACE = re.compile(rb'^Return-Path: <[^>]*>\r\nReceived: from [^\r\n]*\r\n\tby [^\r\n]*\r\n\tfor <[^>]+>; [^\r\n]+\r\n')

def report(user, raw):
    m = TRACE.match(raw)
    body = raw[m.end():] if m else raw
    lid = re.search(rb'X-Load-Id: (\d+)', body)
    print(json.dumps({'user': user, 'id': lid.group(1).decode() if lid else None, 'sha': hashlib.sha256(body).hexdigest(), 'trace': bool(m)}))

for user in users:
    if proto == 'login':
        try:
            c = imaplib.IMAP4('127.0.0.1', port, timeout=10)
            c.login(user, password)
            typ, data = c.select('INBOX')
            c.logout()
            print(json.dumps({'user': user, 'ok': typ == 'OK'}))
        except Exception as e:
            print(json.dumps({'user': user, 'ok': False, 'error': str(e)}))
    elif proto == 'imap':
        c = imaplib.IMAP4('127.0.0.1', port, timeout=30)
        c.login(user, password)
        typ, data = c.select('INBOX', readonly=True)
        n = int(data[0])
        if n > 0:
            typ, data = c.fetch('1:*', '(BODY.PEEK[])')
            for item in data:
                if isinstance(item, tuple):
                    report(user, item[1])
        c.logout()
    else:
        c = poplib.POP3('127.0.0.1', port, timeout=30)
        c.user(user)
        c.pass_(password)
        count, _ = c.stat()
        for i in range(1, count + 1):
            resp, lines, octets = c.retr(i)
            raw = b'\r\n'.join(lines) + b'\r\n'
            if len(raw) != octets:
                print(json.dumps({'user': user, 'error': 'octets %d != %d' % (len(raw), octets)}))
            report(user, raw)
        c.quit()
    sys.stdout.flush()
