#!/bin/sh
# Builds the minimal Debian root the systemd tests boot (tests/src/systemd.rs runs this once
# and caches the result; bump ROOT_VERSION there when this recipe changes). $1: an empty
# directory to build into. Only what bookworm's minbase has, plus systemd as init and nginx
# (the www-data proxy of the feed check): no dbus, no iproute2 (the package's Depends must
# bring what the daemon runs).
set -eu
root="$1"
debootstrap --variant=minbase --include=systemd,systemd-sysv bookworm "$root" http://deb.debian.org/debian
# Nothing starts while packages are installed into the root from outside it.
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$root/etc/resolv.conf"
chroot "$root" apt-get update -q
DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -q --no-install-recommends nginx
rm "$root/usr/sbin/policy-rc.d"
chroot "$root" apt-get clean
echo floodgate-test > "$root/etc/hostname"
: > "$root/etc/machine-id"
