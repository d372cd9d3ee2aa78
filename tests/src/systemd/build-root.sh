#!/bin/sh
# Builds the minimal Debian root the systemd tests boot (tests/src/systemd.rs runs this once
# and caches the result; bump ROOT_VERSION there when this recipe changes). $1: an empty
# directory to build into. bookworm's minbase plus systemd as init, no dbus. nginx (the
# www-data proxy of the feed check) and its dependencies are only downloaded into apt's
# archive cache: each test installs the .deb first, whose Depends must bring what the daemon
# runs (iproute2 is not in minbase), then nginx, both offline.
set -eu
root="$1"
debootstrap --variant=minbase --include=systemd,systemd-sysv bookworm "$root" http://deb.debian.org/debian
cp /etc/resolv.conf "$root/etc/resolv.conf"
chroot "$root" apt-get update -q
DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -q --download-only --no-install-recommends nginx
echo floodgate-test > "$root/etc/hostname"
: > "$root/etc/machine-id"
