#!/bin/sh
# Boots the cached root as a container (tests/src/systemd.rs runs this as PID 1 of fresh pid,
# mount, uts, ipc and cgroup namespaces, inside the test's network namespace, with private
# mount propagation: nothing here reaches the host's mounts). $1: the cached root (the
# overlay's read-only lower layer); $2: the test's directory holding upper/, work/ and root/.
# Like systemd-nspawn: /proc/sys and /sys read-only, cgroup2 and bpffs writable, a /dev of
# its own, then pivot_root and systemd as PID 1 with $container set.
set -eu
base="$1"
m="$2/root"
mount -t overlay overlay -o "lowerdir=$base,upperdir=$2/upper,workdir=$2/work" "$m"
mount -t proc -o nosuid,nodev,noexec proc "$m/proc"
mount --bind "$m/proc/sys" "$m/proc/sys"
mount -o remount,bind,ro "$m/proc/sys"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$m/sys"
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$m/sys/fs/cgroup"
mount -t bpf -o nosuid,nodev,noexec,mode=700 bpf "$m/sys/fs/bpf"
mount -t tmpfs -o mode=755,nosuid,size=64m tmpfs "$m/dev"
for node in null zero full random urandom tty; do
    touch "$m/dev/$node"
    mount --bind "/dev/$node" "$m/dev/$node"
done
mkdir "$m/dev/pts" "$m/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$m/dev/pts"
ln -s pts/ptmx "$m/dev/ptmx"
ln -s /proc/self/fd "$m/dev/fd"
ln -s /proc/self/fd/0 "$m/dev/stdin"
ln -s /proc/self/fd/1 "$m/dev/stdout"
ln -s /proc/self/fd/2 "$m/dev/stderr"
mkdir -p "$m/.oldroot"
cd "$m"
pivot_root . .oldroot
cd /
umount -l /.oldroot
rmdir /.oldroot
exec env -i container=floodgate-test PATH=/usr/sbin:/usr/bin:/sbin:/bin /lib/systemd/systemd --log-color=no
