#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build Switchyard: cmake (Pingora's
# zlib-ng build) and a C compiler, plus any command named as an argument (the
# benchmark's `nginx`, the tests' `systemd-analyze`). As root it installs them;
# otherwise it prints the exact command and stops.
set -euo pipefail
# The Debian package that provides a command, where the names differ.
package_for() {
    case "$1" in
        nginx) echo nginx-light ;;
        systemd-analyze) echo systemd ;;
        *) echo "$1" ;;
    esac
}
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
for extra in "$@"; do
    command -v "$extra" >/dev/null 2>&1 || missing+=("$(package_for "$extra")")
done
[ ${#missing[@]} -eq 0 ] && exit 0
packages=("${missing[@]}")
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${packages[*]} with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
else
    echo "missing: ${packages[*]}. Install them with:" >&2
    echo "    sudo apt-get install -y ${packages[*]}" >&2
    exit 1
fi
