# Drives the POP3 server with Python's poplib, as a real client would. Reads a JSON plan on stdin:
#   {"host", "port", "mode": "plain" | "stls" | "ssl", "cafile": path or null, "steps": [[op, args...], ...]}
# and prints one JSON result per step: {"ok": true, "r": ...} or {"ok": false, "err": "..."}.
# Bytes are returned as latin-1 strings so every octet survives JSON. Message data is re-joined with CRLF,
# and "lastcrlf" tells the caller whether poplib saw the message end in a line break it stripped.
import base64
import json
import poplib
import ssl
import sys

plan = json.load(sys.stdin)
ctx = ssl.create_default_context(cafile=plan.get("cafile"))
ctx.check_hostname = False  # the test certificate names localhost; we dial 127.0.0.1
if plan.get("cafile") is None:
    ctx.verify_mode = ssl.CERT_NONE


def conv(v):
    if isinstance(v, bytes):
        return v.decode("latin-1")
    if isinstance(v, (list, tuple)):
        return [conv(x) for x in v]
    if isinstance(v, dict):
        return {conv(k): conv(x) for k, x in v.items()}
    return v


def message(resp, lines, octets):
    return {"resp": conv(resp), "data": conv(b"\r\n".join(lines)), "octets": octets, "lines": len(lines)}


if plan["mode"] == "ssl":
    c = poplib.POP3_SSL(plan["host"], plan["port"], context=ctx, timeout=60)
else:
    c = poplib.POP3(plan["host"], plan["port"], timeout=60)
out = [{"ok": True, "r": conv(c.getwelcome())}]
for step in plan["steps"]:
    op, args = step[0], step[1:]
    try:
        if op == "stls":
            r = c.stls(context=ctx)
        elif op == "capa":
            r = c.capa()
        elif op == "user":
            r = c.user(args[0])
        elif op == "pass":
            r = c.pass_(args[0])
        elif op == "auth_plain":  # initial response in the AUTH line (RFC 5034)
            r = c._shortcmd("AUTH PLAIN " + base64.b64encode(("\0%s\0%s" % (args[0], args[1])).encode()).decode())
        elif op == "auth_plain_cont":  # empty challenge, then the response on its own line
            first = c._shortcmd("AUTH PLAIN")
            r = [first, c._shortcmd(base64.b64encode(("\0%s\0%s" % (args[0], args[1])).encode()).decode())]
        elif op == "stat":
            r = c.stat()
        elif op == "list":
            r = c.list(*args)
        elif op == "uidl":
            r = c.uidl(*args)
        elif op == "retr":
            r = message(*c.retr(args[0]))
        elif op == "top":
            r = message(*c.top(args[0], args[1]))
        elif op == "dele":
            r = c.dele(args[0])
        elif op == "rset":
            r = c.rset()
        elif op == "noop":
            r = c.noop()
        elif op == "quit":
            r = c.quit()
        elif op == "close":  # drop the connection without QUIT
            c.close()
            r = None
        else:
            raise ValueError("unknown op " + op)
        out.append({"ok": True, "r": conv(r)})
    except poplib.error_proto as e:
        out.append({"ok": False, "err": conv(e.args[0] if e.args else str(e))})
print(json.dumps(out))
