#!/bin/bash
# Container health check of lossd: GET /healthz, healthy on "HTTP/1.x 200".
# Installed in the image as /usr/local/bin/lossd-healthcheck (HEALTHCHECK, compose).
#
# debian:12-slim has no curl or wget, and curl would add 16 packages, 11 MiB
# (libcurl with its Kerberos, LDAP, SSH, RTMP, ... libraries) for a health check. bash is in every
# Debian image (Essential: yes), and its /dev/tcp redirections open a TCP
# connection, over which this script speaks plain HTTP/1.0: a real request to
# the real endpoint, not just a port probe.
#
# Address: LOSSD_BIND as lossd reads it. 0.0.0.0 (the image's default) and ::
# are reached over loopback; any other address is used as it is.
# Port: LOSSD_PORT (default 8080).  The image's HEALTHCHECK runs without
# arguments; a different port or address can be given as $1 and $2.
#
# With TLS (LOSSD_TLS_CERT set) bash cannot speak HTTPS: the check then only
# proves that lossd accepts connections. Kubernetes does not use this script:
# its probes are httpGet (docker/k8s/deployment.yaml).
#
# Exit status: 0 healthy, 1 unhealthy (what HEALTHCHECK expects).
set -u

port=${1:-${LOSSD_PORT:-8080}}
bind=${2:-${LOSSD_BIND:-127.0.0.1}}
bind=${bind#[}
bind=${bind%]}
case $bind in
  0.0.0.0 | '') host=127.0.0.1 ;;
  :: | ::0 | 0:0:0:0:0:0:0:0) host=::1 ;;
  *) host=$bind ;;
esac

unhealthy() {
  echo "lossd-healthcheck: $*" >&2
  exit 1
}

# Connect. On loopback a refused or accepted connection is immediate.
{ exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null ||
  unhealthy "cannot connect to $host port $port"

if [ -n "${LOSSD_TLS_CERT:-}" ]; then
  exec 3>&-
  echo "lossd-healthcheck: $host port $port accepts connections (TLS: HTTP not checked)"
  exit 0
fi

printf 'GET /healthz HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3 ||
  unhealthy "cannot send the request to $host port $port"

# The status line, within 2 s (HEALTHCHECK's own --timeout is the outer bound).
status=""
IFS= read -r -t 2 status <&3 || true
exec 3>&-
status=${status%$'\r'}
case $status in
  'HTTP/1.'[01]' 200'*)
    echo "lossd-healthcheck: GET /healthz on $host port $port: $status"
    exit 0
    ;;
  '') unhealthy "GET /healthz on $host port $port: no answer within 2 s" ;;
  *) unhealthy "GET /healthz on $host port $port: $status" ;;
esac
