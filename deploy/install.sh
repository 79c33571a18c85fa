#!/bin/sh
# Installs ciosync on one machine: what the PHP connector's README had you do by hand.
#
#   deploy/install.sh [--systemd | --cron] [--enable] [--binary PATH]
#                     [--config-example PATH] [--root DIR]
#
#  - creates the system user `ciosync` (if missing);
#  - /etc/ciosync (0750, root:ciosync), with config.toml (0640) from config.example.toml
#    if there is none yet: an existing config is never overwritten;
#  - /var/lib/ciosync, the data dir (0700, ciosync:ciosync);
#  - the binary as /usr/local/bin/ciosync (replaced by a rename, so a run in progress keeps
#    its copy);
#  - the schedule: systemd units (default when systemctl exists) or /etc/cron.d/ciosync.
#
# The schedule is activated (timer enabled, or cron file installed) only when the config
# existed before this run, or with --enable: a fresh install gets a config full of "..."
# that would fail every five minutes. So: install, edit the config, put the secrets in
# place, `ciosync check`, then run this script again.
#
# Safe to run again (upgrades replace the binary and units, keep config and data).
# --root DIR (or env DESTDIR) installs into DIR instead of /: then nothing outside DIR is
# touched (no useradd, chown or systemctl); the script prints what it would have done.

set -eu
# Predictable modes for whatever mkdir creates; sensitive files get explicit chmods.
umask 022

usage() {
    sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
}

die() {
    echo "install.sh: $*" >&2
    exit 1
}

say() {
    echo "install.sh: $*"
}

script_dir=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
repo_dir=$(dirname -- "$script_dir")

mode=""
enable=no
binary=""
config_example=""
root=${DESTDIR:-/}

while [ $# -gt 0 ]; do
    case $1 in
        --systemd) mode=systemd ;;
        --cron) mode=cron ;;
        --enable) enable=yes ;;
        --binary)
            [ $# -ge 2 ] || die "--binary needs a path"
            binary=$2
            shift
            ;;
        --binary=*) binary=${1#--binary=} ;;
        --config-example)
            [ $# -ge 2 ] || die "--config-example needs a path"
            config_example=$2
            shift
            ;;
        --config-example=*) config_example=${1#--config-example=} ;;
        --root)
            [ $# -ge 2 ] || die "--root needs a directory"
            root=$2
            shift
            ;;
        --root=*) root=${1#--root=} ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

# Normalise the root: "" and "/" both mean the live system; strip a trailing slash.
case $root in
    "" | /) root=/ ;;
    */) root=${root%/} ;;
esac
if [ "$root" = / ]; then
    live=yes
    prefix=""
else
    live=no
    [ -d "$root" ] || die "--root $root: no such directory"
    prefix=$root
fi

if [ "$live" = yes ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (or use --root DIR to stage an install)"
fi

if [ -z "$mode" ]; then
    if command -v systemctl >/dev/null 2>&1; then
        mode=systemd
    else
        mode=cron
    fi
fi

if [ -z "$binary" ]; then
    binary=$repo_dir/target/release/ciosync
    [ -f "$binary" ] || die "no binary at $binary: run 'cargo build --release --locked' first, or pass --binary PATH"
fi
[ -f "$binary" ] || die "--binary $binary: no such file"
[ -n "$config_example" ] || config_example=$repo_dir/config.example.toml
[ -f "$config_example" ] || die "no config example at $config_example (pass --config-example PATH)"
for unit in ciosync.service ciosync.timer ciosync.cron; do
    [ -f "$script_dir/$unit" ] || die "missing $script_dir/$unit"
done

# Runs a command that only makes sense on the live system; otherwise says what it would do.
live_only() {
    if [ "$live" = yes ]; then
        "$@"
    else
        say "would run: $*"
    fi
}

# Copies $1 to $2 with mode $3 through a temp file and a rename, so nobody ever sees a
# half-written file (and a running binary is not overwritten in place: "text file busy").
install_file() {
    tmp="$2.new.$$"
    cp -- "$1" "$tmp"
    chmod "$3" "$tmp"
    mv -f -- "$tmp" "$2"
}

# 1. The service user.
if [ "$live" = yes ]; then
    if id ciosync >/dev/null 2>&1; then
        say "user ciosync exists"
    elif command -v useradd >/dev/null 2>&1; then
        useradd --system --user-group --home-dir /var/lib/ciosync --no-create-home \
            --shell /usr/sbin/nologin ciosync
        say "created system user ciosync"
    else
        # BusyBox / Alpine.
        addgroup -S ciosync
        adduser -S -D -H -h /var/lib/ciosync -s /sbin/nologin -G ciosync ciosync
        say "created system user ciosync"
    fi
else
    say "would create system user ciosync (if missing)"
fi

# 2. Directories. Modes are re-applied on every run; contents are left alone.
mkdir -p "$prefix/etc/ciosync" "$prefix/var/lib/ciosync" "$prefix/usr/local/bin"
chmod 0750 "$prefix/etc/ciosync"
chmod 0700 "$prefix/var/lib/ciosync"
live_only chown root:ciosync "$prefix/etc/ciosync"
live_only chown ciosync:ciosync "$prefix/var/lib/ciosync"

# 3. The config: never overwritten.
config=$prefix/etc/ciosync/config.toml
if [ -e "$config" ]; then
    config_existed=yes
    say "kept existing $config"
else
    config_existed=no
    install_file "$config_example" "$config" 0640
    live_only chown root:ciosync "$config"
    say "wrote $config from $config_example: edit it before the first run"
fi

# 4. The binary.
install_file "$binary" "$prefix/usr/local/bin/ciosync" 0755
say "installed $prefix/usr/local/bin/ciosync"

# The operator guide the units' Documentation= points at.
if [ -f "$script_dir/README.md" ]; then
    mkdir -p "$prefix/usr/local/share/doc/ciosync"
    install_file "$script_dir/README.md" "$prefix/usr/local/share/doc/ciosync/README.md" 0644
fi

# 5. The schedule.
activate=no
if [ "$enable" = yes ] || [ "$config_existed" = yes ]; then
    activate=yes
fi

case $mode in
    systemd)
        mkdir -p "$prefix/etc/systemd/system"
        install_file "$script_dir/ciosync.service" "$prefix/etc/systemd/system/ciosync.service" 0644
        install_file "$script_dir/ciosync.timer" "$prefix/etc/systemd/system/ciosync.timer" 0644
        say "installed ciosync.service and ciosync.timer in $prefix/etc/systemd/system"
        live_only systemctl daemon-reload
        if [ "$activate" = yes ]; then
            live_only systemctl enable --now ciosync.timer
        fi
        if [ -e "$prefix/etc/cron.d/ciosync" ]; then
            say "note: $prefix/etc/cron.d/ciosync also exists; remove it (two schedulers only make runs skip)"
        fi
        ;;
    cron)
        if [ "$activate" = yes ]; then
            mkdir -p "$prefix/etc/cron.d"
            # No dot in the name: Debian's cron ignores /etc/cron.d files that have one.
            install_file "$script_dir/ciosync.cron" "$prefix/etc/cron.d/ciosync" 0644
            say "installed $prefix/etc/cron.d/ciosync (every five minutes)"
        fi
        if [ -e "$prefix/etc/systemd/system/ciosync.timer" ]; then
            say "note: ciosync.timer is also installed; disable it (systemctl disable --now ciosync.timer)"
        fi
        ;;
esac

if [ "$activate" = no ]; then
    cat <<EOF
install.sh: not scheduled yet. Next:
  1. edit $config (home_lcs, site_id, region, ...);
  2. put the secrets in files owned by ciosync, mode 0600, e.g.
       install -m 0600 -o ciosync -g ciosync /dev/null /etc/ciosync/gis-token   (then write the token)
  3. check: sudo -u ciosync /usr/local/bin/ciosync check
  4. run this script again (or pass --enable) to schedule it.
EOF
fi
