#!/usr/bin/env bash
# Installs the Debian packages whose programs the tests talk to, when missing.
# Needs root for apt-get; without root it only reports what is missing (the
# tests then fail in CI and skip elsewhere, naming the missing peer).
set -euo pipefail
declare -A need=(
  [/usr/sbin/sshd]=openssh-server
  [/usr/bin/ssh-keygen]=openssh-client
  [/usr/bin/redis-server]=redis-server
  [/usr/bin/etcd]=etcd-server
  [/usr/lib/nagios/plugins/check_tcp]=monitoring-plugins-basic
  [/usr/lib/nagios/plugins/check_disk]=monitoring-plugins-basic
  [/usr/lib/nagios/plugins/check_http]=monitoring-plugins-standard
  [/usr/bin/prometheus]=prometheus
  [/usr/bin/prometheus-alertmanager]=prometheus-alertmanager
  [/usr/bin/systemd]=systemd
  [/usr/bin/unshare]=util-linux
  [/usr/bin/kubectl]=kubernetes-client
  [/usr/bin/curl]=curl
)
missing=()
for path in "${!need[@]}"; do
  [ -x "$path" ] || missing+=("${need[$path]}")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all test peers present"
  exit 0
fi
pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing $pkgs(not root: install them with apt-get)" >&2
  exit 0
fi
echo "deps: installing $pkgs"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
# Debian starts some of these as system services; the tests start their own
# on loopback ports, so stop the packaged ones if an init system started them.
for svc in redis-server etcd prometheus prometheus-alertmanager ssh; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then systemctl stop "$svc" || true; fi
  if command -v service >/dev/null; then service "$svc" stop >/dev/null 2>&1 || true; fi
done
echo "deps: done"
