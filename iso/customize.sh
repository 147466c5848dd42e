#!/usr/bin/env bash
# mmdebstrap's customize hook for iso/build.sh: puts mailgrid and the appliance's boot logic into the root
# tree ROOT (mmdebstrap has /proc, /sys and /dev mounted there while this runs).
#   customize.sh ROOT ISO_DIR APP_DIR UNIT_FILE CONFIG_FILE
set -euo pipefail
ROOT=$1 HERE=$2 APP=$3 UNIT=$4 CONFIG=$5

# mailgrid with its production node_modules; the Node 24 runtime is the one its `node` package installed.
mkdir -p "$ROOT/opt"
cp -a "$APP" "$ROOT/opt/mailgrid"
ln -sf /opt/mailgrid/node_modules/node/bin/node "$ROOT/usr/local/bin/node"

# The appliance's own files (first-boot service, data-disk logic, network, the `mailgrid` command).
cp -a "$HERE/rootfs/." "$ROOT/"
chmod 0755 "$ROOT/usr/local/bin/mailgrid" "$ROOT"/usr/local/sbin/mailgrid-*

install -D -m 0644 "$UNIT" "$ROOT/etc/systemd/system/mailgrid.service"
install -D -m 0644 "$CONFIG" "$ROOT/etc/mailgrid/mailgrid.toml"

# The service's own user, when the unit names one (DynamicUser= units need none).
user=$(sed -n 's/^[[:space:]]*User=[[:space:]]*//p' "$UNIT" | tail -n 1)
if [ -n "$user" ] && [ "$user" != root ] && ! chroot "$ROOT" getent passwd "$user" >/dev/null; then
  chroot "$ROOT" useradd --system --user-group --home-dir /var/lib/mailgrid --no-create-home \
    --shell /usr/sbin/nologin "$user"
fi
mkdir -p "$ROOT/var/lib/mailgrid"
echo mailgrid >"$ROOT/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tmailgrid\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"

chroot "$ROOT" systemctl enable mailgrid.service mailgrid-firstboot.service mailgrid-debug-console.service systemd-networkd.service \
  systemd-resolved.service >/dev/null 2>&1
# SSH: off in the image (the boot step starts it when first boot was given a key), and no host keys baked in:
# every node makes its own at first boot (openssh-server's postinst made some in the build tree).
chroot "$ROOT" systemctl disable ssh.service ssh.socket >/dev/null 2>&1 || true
rm -f "$ROOT"/etc/ssh/ssh_host_*
ln -sf /run/systemd/resolve/stub-resolv.conf "$ROOT/etc/resolv.conf"

# Smaller image: no package lists or caches (the appliance is replaced, not upgraded in place).
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb \
  "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/locale/*
