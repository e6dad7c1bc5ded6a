# Shared by the chaos scripts (partition, node, test-cuts). Sourced, not run.
# shellcheck shell=bash
root=$(cd "$here/../.." && pwd)
cd "$root"
source deploy/local/topology.sh
state_dir=tmp/chaos
cuts_file=$state_dir/cuts
mkdir -p "$state_dir"

# FLASHD_CHAOS_LOCAL=DIR: the cluster is processes on loopback started by
# NODES=5 FRONTDOORS=1 deploy/local/cluster.sh up DIR, not containers. Nodes
# are killed, restarted, paused and resumed by their pids; partitions need
# the containers' own network namespaces and are refused.
local_dir=${FLASHD_CHAOS_LOCAL:-}
if [ -n "$local_dir" ]; then
  STORES=(n1 n2 n3 n4 n5)
  FRONTDOORS=(fd-east fd-west fd-north)
  declare -A NODE_REGION=([n1]=east [n2]=west [n3]=north [n4]=east [n5]=west
    [fd-east]=east [fd-west]=west [fd-north]=north)
  store_endpoints() { echo 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003,127.0.0.1:7004,127.0.0.1:7005; }
  frontdoor_endpoints() { echo 127.0.0.1:8001,127.0.0.1:8002,127.0.0.1:8003; }
fi

# The host's iptables runs inside the containers' network namespaces.
IPTABLES=${IPTABLES:-iptables}
need_iptables() {
  command -v "$IPTABLES" >/dev/null && command -v nsenter >/dev/null && return
  echo "installing iptables (and util-linux for nsenter)..." >&2
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables util-linux >/dev/null
}

check_region() {
  [ -n "${REGION_CIDR[$1]:-}" ] || { echo "no region $1 (regions: ${REGIONS[*]})" >&2; exit 2; }
}

check_node() {
  [ -n "${NODE_REGION[$1]:-}" ] || { echo "no node $1 (stores: ${STORES[*]}; front doors: ${FRONTDOORS[*]})" >&2; exit 2; }
}

# leader_id: the store leader's ID, asked of the store nodes.
leader_id() {
  local id
  id=$(bin/flashctl --endpoints "$(store_endpoints)" --timeout 10s -o json cluster status 2>/dev/null |
    grep -o '"leaderId": *"[^"]*"' | head -1 | cut -d'"' -f4) || true
  [ -n "$id" ] || { echo "no leader known" >&2; exit 1; }
  echo "$id"
}

resolve_node() {
  if [ "$1" = leader ]; then leader_id; else check_node "$1"; echo "$1"; fi
}

resolve_region() {
  if [ "$1" = leader ]; then
    local id
    id=$(leader_id)
    echo "${NODE_REGION[$id]}"
  else
    check_region "$1"
    echo "$1"
  fi
}

# PIDs of the containers' init processes, read with one docker inspect and
# kept for the rest of the script (forget_pids after a container restarts).
declare -A container_pids=()
pids_loaded=false
load_pids() {
  local name pid names=() n
  container_pids=()
  for n in "${STORES[@]}" "${FRONTDOORS[@]}"; do names+=("flashd-$n"); done
  while read -r name pid; do
    name=${name#/flashd-}
    [ -n "$name" ] && [ -n "$pid" ] && [ "$pid" != 0 ] && container_pids[$name]=$pid
  done < <(docker inspect -f '{{.Name}} {{if .State.Running}}{{.State.Pid}}{{else}}0{{end}}' "${names[@]}" 2>/dev/null || true)
  pids_loaded=true
}
forget_pids() { pids_loaded=false; }

# container_pid NODE: the PID of a running container's init, or fail.
container_pid() {
  $pids_loaded || load_pids
  [ -n "${container_pids[$1]:-}" ] || return 1
  echo "${container_pids[$1]}"
}

# ipt NODE ARGS...: iptables in NODE's network namespace.
ipt() {
  $pids_loaded || load_pids
  local pid=${container_pids[$1]:-}
  [ -n "$pid" ] || return 0 # not running: nothing to filter
  shift
  nsenter -t "$pid" -n "$IPTABLES" -w "$@"
}

# ensure_chains NODE: FLASHD-IN and FLASHD-OUT exist and are hooked.
ensure_chains() {
  local c hook
  for c in FLASHD-IN FLASHD-OUT; do
    ipt "$1" -N "$c" 2>/dev/null || true
    hook=INPUT
    [ "$c" = FLASHD-OUT ] && hook=OUTPUT
    ipt "$1" -C "$hook" -j "$c" 2>/dev/null || ipt "$1" -I "$hook" 1 -j "$c"
  done
}

# apply_cut NODE LINE: the rules one recorded cut puts on NODE.
#   cut A[,B] C[,D]     drop both ways between the two sets of regions
#   oneway FROM TO      drop what FROM sends on connections it opened to TO
apply_cut() {
  local node=$1 kind=$2 a=$3 b=$4 mine=${NODE_REGION[$1]} r
  ensure_chains "$node"
  case $kind in
    cut)
      local other=""
      if [[ ",$a," == *",$mine,"* ]]; then other=$b; elif [[ ",$b," == *",$mine,"* ]]; then other=$a; fi
      for r in ${other//,/ }; do
        ipt "$node" -A FLASHD-IN -s "${REGION_CIDR[$r]}" -j DROP
        ipt "$node" -A FLASHD-OUT -d "${REGION_CIDR[$r]}" -j DROP
      done
      ;;
    oneway)
      if [ "$mine" = "$a" ]; then
        ipt "$node" -A FLASHD-OUT -d "${REGION_CIDR[$b]}" -m conntrack --ctdir ORIGINAL -j DROP
      elif [ "$mine" = "$b" ]; then
        ipt "$node" -A FLASHD-IN -s "${REGION_CIDR[$a]}" -m conntrack --ctdir ORIGINAL -j DROP
      fi
      ;;
  esac
}

all_nodes() { echo "${STORES[@]}" "${FRONTDOORS[@]}"; }

# record_cut LINE: remember a cut and apply it to every running container.
record_cut() {
  need_iptables
  echo "$1" >>"$cuts_file"
  local n
  for n in $(all_nodes); do
    # shellcheck disable=SC2086
    apply_cut "$n" $1
  done
}

# reapply_cuts NODE: the cuts in force, on a container that just started.
reapply_cuts() {
  [ -s "$cuts_file" ] || return 0
  need_iptables
  local line
  while read -r line; do
    # shellcheck disable=SC2086
    apply_cut "$1" $line
  done <"$cuts_file"
}

heal_all_cuts() {
  rm -f "$cuts_file"
  command -v "$IPTABLES" >/dev/null || return 0
  local n
  for n in $(all_nodes); do
    ipt "$n" -F FLASHD-IN 2>/dev/null || true
    ipt "$n" -F FLASHD-OUT 2>/dev/null || true
  done
}
