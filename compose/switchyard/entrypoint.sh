#!/bin/sh
# Starts the gateway in the compose stack. The configuration file is the one named by
# SWITCHYARD_TEMPLATE (compose/switchyard/switchyard.toml by default); .env's choices
# replace the lines that carry a `# from ...` comment:
#
#   SWITCHYARD_MODE    hybrid -> local-first, local-only -> local-only, cloud-only -> cloud-only
#   COMPOSE_PROFILES   local-ollama -> ollama at http://ollama:11434,
#                      local-vllm   -> vllm   at http://vllm:8000,
#                      local-sglang -> sglang at http://sglang:30000,
#                      none of them -> no local backend
#   host_ip lines      the container's default gateway (the host, on the compose network)
#
# The result is validated with `switchyard check` before the gateway starts, so a bad
# choice stops here with the reason rather than with a gateway that routes nowhere.
#
#   entrypoint.sh --print [TEMPLATE]   writes the rendered file to stdout and exits
set -eu

template=${SWITCHYARD_TEMPLATE:-/etc/switchyard/switchyard.toml}
print_only=false
if [ "${1:-}" = "--print" ]; then
  print_only=true
  [ -n "${2:-}" ] && template=$2
  shift $#
fi
out=${SWITCHYARD_RENDERED:-/tmp/switchyard.toml}
die() { echo "switchyard entrypoint: $*" >&2; exit 2; }

mode=${SWITCHYARD_MODE:-hybrid}
case "$mode" in
  hybrid) strategy=local-first ;;
  local-only) strategy=local-only ;;
  cloud-only) strategy=cloud-only ;;
  *) die "SWITCHYARD_MODE must be hybrid, local-only or cloud-only, not '$mode'" ;;
esac

# The local-* entries of COMPOSE_PROFILES (comma-separated); only one backend runs at a time.
backends=$(printf '%s' "${COMPOSE_PROFILES:-}" | tr ',' '\n' | sed -n 's/^ *local-\([a-z]*\) *$/\1/p')
[ "$(printf '%s' "$backends" | grep -c .)" -le 1 ] ||
  die "COMPOSE_PROFILES names more than one local backend: $(echo $backends)"
case "$backends" in
  ollama) kind=ollama url=http://ollama:11434 ;;
  vllm) kind=vllm url=http://vllm:8000 ;;
  sglang) kind=sglang url=http://sglang:30000 ;;
  "") kind=none url= ;;
  *) die "unknown backend profile local-$backends (local-ollama, local-vllm, local-sglang)" ;;
esac
if [ "$mode" = cloud-only ] && [ "$kind" != none ]; then
  echo "switchyard entrypoint: SWITCHYARD_MODE=cloud-only: the $kind service runs but takes no requests (drop local-$kind from COMPOSE_PROFILES)" >&2
  kind=none url=
fi
# Whether the file turns the controller on ([control] enabled = true).
controller=$(awk '/^\[/ { section = $0 } section == "[control]" && /^enabled *= *true/ { print "on" }' "$template")
if [ -n "$controller" ]; then
  [ -z "$backends" ] ||
    die "this configuration runs the backend itself (the controller): leave COMPOSE_PROFILES empty, not local-$backends"
elif [ "$mode" = local-only ] && [ "$kind" = none ]; then
  die "SWITCHYARD_MODE=local-only needs a backend: set COMPOSE_PROFILES to local-ollama, local-vllm or local-sglang"
fi

# The host on the compose network: the default route's gateway (/proc/net/route holds it
# as little-endian hex).
gateway=
hex=$(awk '$2 == "00000000" && $3 != "00000000" { print $3; exit }' /proc/net/route 2>/dev/null || true)
if [ -n "$hex" ]; then
  gateway=$(printf '%d.%d.%d.%d' "0x${hex#??????}" "0x$(echo "$hex" | cut -c5-6)" "0x$(echo "$hex" | cut -c3-4)" "0x${hex%??????}")
fi
# (--print on a machine without one: a stand-in, the file is only looked at.)
[ -z "$gateway" ] && $print_only && gateway=127.0.0.1
if grep -q '# from the container.s default route' "$template" && [ -z "$gateway" ]; then
  die "no default route in this container: cannot tell where the controller's backend will be published"
fi

render() {
  awk -v mode="$mode" -v strategy="$strategy" -v kind="$kind" -v url="$url" -v gateway="$gateway" '
    /# from SWITCHYARD_MODE/ && /^strategy *=/ { printf "strategy = \"%s\"  # from SWITCHYARD_MODE=%s\n", strategy, mode; next }
    /# from COMPOSE_PROFILES/ && /^kind *=/ { printf "kind = \"%s\"  # from COMPOSE_PROFILES\n", kind; next }
    /# from COMPOSE_PROFILES/ && /^url *=/ {
      if (url == "") print "# url: no local backend"; else printf "url = \"%s\"  # from COMPOSE_PROFILES\n", url
      next
    }
    /# from the container.s default route/ && /^host_ip *=/ { printf "host_ip = \"%s\"  # from the default route\n", gateway; next }
    { print }
  ' "$template"
}

if $print_only; then
  render
  exit 0
fi
render >"$out"
if [ -n "$controller" ]; then
  echo "switchyard entrypoint: mode $mode (strategy $strategy), local backend run by the controller (published on $gateway)" >&2
else
  echo "switchyard entrypoint: mode $mode (strategy $strategy), local backend $kind${url:+ at $url}" >&2
fi
switchyard check --config "$out" >&2
exec switchyard --config "$out" "$@"
