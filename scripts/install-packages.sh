#!/bin/sh
# Install the Debian packages named on the command line for their binaries only, so that
# setting up the tests does not change how the host runs:
# - packages already installed are left alone (no upgrade; nothing to do means no root needed);
# - no service is started: a policy-rc.d answering 101 ("action forbidden") is in place during
#   the install, and whatever policy-rc.d the host had is put back afterwards;
# - no service is left enabled at boot by this install: the systemd units and SysV links the
#   packages' scripts enabled are disabled again; units enabled before are not touched.
set -eu

missing=""
for package in "$@"; do
    if [ "$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null)" != installed ]; then
        missing="$missing $package"
    fi
done
if [ -z "$missing" ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    exec sudo sh "$0" "$@"
fi
echo "installing Debian packages:$missing (no services started or enabled)"

policy=/usr/sbin/policy-rc.d
saved=""
work=$(mktemp -d)
restore() {
    if [ -n "$saved" ]; then
        mv -f "$saved" "$policy"
    else
        rm -f "$policy"
    fi
    rm -rf "$work"
}
if [ -e "$policy" ] || [ -L "$policy" ]; then
    saved="$work/policy-rc.d"
    mv "$policy" "$saved"
fi
trap restore EXIT
trap 'exit 130' INT TERM
printf '#!/bin/sh\n# Temporary: no service starts while test packages are installed.\nexit 101\n' \
    > "$policy"
chmod 0755 "$policy"

boot_links() {
    find /etc/systemd/system /etc/rc0.d /etc/rc1.d /etc/rc2.d /etc/rc3.d /etc/rc4.d \
        /etc/rc5.d /etc/rc6.d /etc/rcS.d -type l 2>/dev/null | sort
}
boot_links > "$work/before"

apt-get update -qq
# shellcheck disable=SC2086  # one word per package
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --no-upgrade \
    $missing

boot_links > "$work/after"
comm -13 "$work/before" "$work/after" > "$work/new"
# systemd: a new link in a *.wants or *.requires directory is a unit enabled by this install.
for link in $(grep -E '^/etc/systemd/system/[^/]+\.(wants|requires)/' "$work/new" || true); do
    unit=${link##*/}
    echo "disabling $unit (enabled by its package's installation)"
    systemctl disable --quiet "$unit" 2>/dev/null || true
    rm -f "$link"
done
# SysV: a new start link (S##name) is a script enabled by this install.
scripts=$(sed -n 's|^/etc/rc[0-6S]\.d/S[0-9][0-9]||p' "$work/new" | sort -u)
for script in $scripts; do
    update-rc.d "$script" disable >/dev/null 2>&1 || true
done
