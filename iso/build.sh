#!/usr/bin/env bash
# Builds the mailgrid appliance: a hybrid (BIOS and UEFI) x86_64 live ISO of Debian 12 with Node 24 and
# mailgrid under /opt/mailgrid. Run as root (`sudo npm run iso`). Steps: install the build tools with apt,
# read the Debian mirror from this machine's apt configuration, mmdebstrap a minimal bookworm with a kernel
# and live-boot, copy mailgrid in (repo files + `npm ci --omit=dev`, whose `node` package carries the Node 24
# binary), squash it, and let grub-mkrescue make the BIOS+UEFI image. Prints the image's size and SHA-256.
#
# Environment:
#   MAILGRID_ISO_OUT    the image to write (default iso/out/mailgrid-amd64.iso)
#   MAILGRID_ISO_WORK   the work dir (default a fresh dir under /var/tmp, removed at the end)
#   MAILGRID_ISO_KEEP=1 keep the work dir (to look inside after a failure)
set -euo pipefail

SUITE=bookworm
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
OUT=${MAILGRID_ISO_OUT:-$REPO/iso/out/mailgrid-amd64.iso}
BUILD_DEPS=(mmdebstrap squashfs-tools xorriso grub-pc-bin grub-efi-amd64-bin grub-common mtools dosfstools)
# What the live system needs beyond Debian's minbase: the kernel and live-boot (its initramfs finds the
# squashfs on the boot medium), systemd as init with networkd/resolved for DHCP and DNS, the disk tools the
# data-disk logic uses (blkid and wipefs are in util-linux, mkfs.ext4 in e2fsprogs), and libstdc++ for the
# Node binary (`ldd node`: libstdc++, libgcc_s, libm, libc); openssh-server for the optional key-only root
# login (off unless first boot was given a public key: customize.sh disables it and removes its host keys).
IMAGE_PACKAGES=linux-image-amd64,live-boot,live-boot-initramfs-tools,systemd-sysv,systemd-resolved,udev,kmod,iproute2,e2fsprogs,libstdc++6,ca-certificates,procps,less,openssh-server

say () { printf 'iso: %s\n' "$*" >&2; }
die () { say "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap, chroot and squashfs need it): sudo npm run iso"
[ "$(uname -m)" = x86_64 ] || die "builds on x86_64 only (the image's Node binary and grub platforms are amd64)"
started=$(date +%s)

# --- build dependencies ------------------------------------------------------------------------------
missing=()
for p in "${BUILD_DEPS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# npm only when no npm is on the PATH at all (a machine with a nodesource or nvm Node has its own, and
# Debian's npm package conflicts with nodesource's nodejs).
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing build dependencies: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- the Debian mirror, from apt's own configuration ---------------------------------------------------
# Prints "URI SUITE" for every enabled `deb` source: one-line format (sources.list, *.list) and deb822
# (*.sources). Files apt ignores (other suffixes, e.g. *.disabled) are ignored here too.
apt_sources () {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # deb [options] URI SUITE COMPONENTS...
    sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk '$1 == "deb" && NF >= 3 { print $2, $3 }'
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk '
      function flush () {
        if (types ~ /(^| )deb( |$)/ && enabled != "no") {
          n = split(uris, u, " "); m = split(suites, s, " ")
          for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) print u[i], s[j]
        }
        types = ""; uris = ""; suites = ""; enabled = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      {
        key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ +/, ""); val = $0
        if (key == "types") types = val
        else if (key == "uris") uris = val
        else if (key == "suites") suites = val
        else if (key == "enabled") enabled = tolower(val)
      }
      END { flush() }' "$f"
  done
}
sources=$(apt_sources)
mirror=$(awk -v s="$SUITE" '$2 == s { print $1; exit }' <<<"$sources")
security=$(awk -v s="$SUITE-security" '$2 == s { print $1; exit }' <<<"$sources")
updates=$(awk -v s="$SUITE-updates" '$2 == s { print $1; exit }' <<<"$sources")
[ -n "$mirror" ] || die "no 'deb ... $SUITE' source in /etc/apt/sources.list or /etc/apt/sources.list.d/: add the Debian 12 mirror this machine should use"
mirror_lines=("deb $mirror $SUITE main")
[ -n "$updates" ] && mirror_lines+=("deb $updates $SUITE-updates main")
[ -n "$security" ] && mirror_lines+=("deb $security $SUITE-security main")
say "Debian mirror (from apt's configuration): ${mirror_lines[*]}"

# --- work dir ------------------------------------------------------------------------------------------
if [ -n "${MAILGRID_ISO_WORK:-}" ]; then
  WORK=$MAILGRID_ISO_WORK
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d /var/tmp/mailgrid-iso.XXXXXX)
fi
cleanup () {
  # A hook that died mid-way can leave mounts below the root; never rm -rf through a mount.
  if [ -d "$WORK/rootfs" ]; then
    { findmnt -rn -o TARGET | grep -F "$WORK/rootfs" || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
  fi
  if [ "${MAILGRID_ISO_KEEP:-0}" = 1 ]; then say "work dir kept: $WORK"; else rm -rf --one-file-system "$WORK"; fi
}
trap cleanup EXIT
avail_kb=$(df -Pk "$WORK" | awk 'NR == 2 { print $4 }')
# The root tree (~1 GiB with Node and node_modules), the squashfs and the ISO, with room to spare.
[ "$avail_kb" -gt $((4 * 1024 * 1024)) ] || die "less than 4 GiB free under $WORK"

# --- mailgrid itself: the repo's tracked files and its production dependencies -----------------------
say "staging mailgrid (npm ci --omit=dev)"
APP=$WORK/app
mkdir -p "$APP"
# The work tree's files that git tracks or would track (not ignored ones: data dirs, images, node_modules).
(cd "$REPO" && git ls-files -z -co --exclude-standard -- package.json package-lock.json README.md LICENSE appliance node gossip store \
  | xargs -0 -I{} sh -c 'test -f "{}" && printf "%s\0" "{}"' \
  | tar --null -T - -cf -) | tar -xf - -C "$APP"
(cd "$APP" && npm ci --omit=dev --no-audit --no-fund --loglevel=error >/dev/null)
NODE_BIN=$APP/node_modules/node/bin/node
[ -x "$NODE_BIN" ] || die "npm ci did not install the Node runtime at node_modules/node/bin/node"
node_version=$("$NODE_BIN" --version)
case $node_version in v24.*) ;; *) die "node_modules/node is $node_version, not Node 24" ;; esac

# The appliance's files: the unit and the production config (appliance/system/README.md says where they go).
unit=$REPO/appliance/system/mailgrid.service
config=$REPO/appliance/system/mailgrid.toml
for f in "$unit" "$config"; do [ -f "$f" ] || die "missing $f"; done

# --- the root file system -------------------------------------------------------------------------------
say "mmdebstrap $SUITE into $WORK/rootfs"
ROOT=$WORK/rootfs
mmdebstrap --variant=minbase --mode=root --format=directory --components=main \
  --include="$IMAGE_PACKAGES" \
  --customize-hook="bash '$HERE/customize.sh' \"\$1\" '$HERE' '$APP' '$unit' '$config'" \
  "$SUITE" "$ROOT" "${mirror_lines[@]}" >"$WORK/mmdebstrap.log" 2>&1 \
  || { tail -n 40 "$WORK/mmdebstrap.log" >&2; die "mmdebstrap failed (log above)"; }

# --- the ISO tree: kernel, initramfs, squashfs, grub ---------------------------------------------------
say "squashing the root file system"
TREE=$WORK/tree
mkdir -p "$TREE/live" "$TREE/boot/grub"
# The newest kernel and its initramfs (live-boot's hooks are in it: they were installed beside the kernel).
kernel=$(ls "$ROOT"/boot/vmlinuz-* | sort -V | tail -n 1)
[ -f "$ROOT/boot/initrd.img-${kernel##*/vmlinuz-}" ] || die "no initramfs for $kernel"
cp "$kernel" "$TREE/live/vmlinuz"
cp "$ROOT/boot/initrd.img-${kernel##*/vmlinuz-}" "$TREE/live/initrd.img"
# zstd: about as small as gzip at level 15 and far faster to unpack than xz, which matters most under the
# software-emulated CPU of the boot test.
mksquashfs "$ROOT" "$TREE/live/filesystem.squashfs" -comp zstd -noappend -quiet \
  -wildcards -e 'boot/vmlinuz-*' 'boot/initrd.img-*' >/dev/null
cp "$HERE/grub.cfg" "$TREE/boot/grub/grub.cfg"
printf 'mailgrid %s, Debian %s, Node %s, built %s\n' "$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)" \
  "$SUITE" "$node_version" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$TREE/mailgrid-version.txt"

say "grub-mkrescue (BIOS + UEFI hybrid)"
mkdir -p "$(dirname "$OUT")"
grub-mkrescue -o "$OUT.tmp" "$TREE" -- -volid MAILGRID_LIVE >"$WORK/grub-mkrescue.log" 2>&1 \
  || { tail -n 40 "$WORK/grub-mkrescue.log" >&2; die "grub-mkrescue failed (log above)"; }
# Both firmware paths must be in the El Torito catalogue: the BIOS image and the EFI system partition.
report=$(xorriso -indev "$OUT.tmp" -report_el_torito plain 2>/dev/null)
grep -q 'El Torito boot img :   1  BIOS' <<<"$report" && grep -q 'El Torito boot img :   2  UEFI' <<<"$report" \
  || { echo "$report" >&2; die "the image lacks a BIOS or a UEFI boot entry"; }
mv -f "$OUT.tmp" "$OUT"

size=$(stat -c %s "$OUT")
sha=$(sha256sum "$OUT" | cut -d' ' -f1)
echo "$sha  $(basename "$OUT")" >"$OUT.sha256"
say "built in $(( $(date +%s) - started )) s"
echo "image:   $OUT"
echo "size:    $size bytes ($(( size / 1024 / 1024 )) MiB)"
echo "sha256:  $sha"
