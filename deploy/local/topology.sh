# The docker-compose cluster's layout, sourced by deploy/local/compose.sh and
# the deploy/chaos scripts. Keep in step with docker-compose.yml.
FLASHD_NET=${FLASHD_NET:-10.213}
COMPOSE_PROJECT=flashd
COMPOSE_FILE_PATH=deploy/local/docker-compose.yml
NETWORK=flashd-wan
REGIONS=(east west north)
declare -A REGION_CIDR=([east]=$FLASHD_NET.1.0/24 [west]=$FLASHD_NET.2.0/24 [north]=$FLASHD_NET.3.0/24)
STORES=(n1 n2 n3 n4 n5)
declare -A NODE_REGION=([n1]=east [n2]=east [n3]=west [n4]=west [n5]=north
  [fd-east]=east [fd-west]=west [fd-north]=north)
declare -A NODE_IP=([n1]=$FLASHD_NET.1.11 [n2]=$FLASHD_NET.1.12 [n3]=$FLASHD_NET.2.11 [n4]=$FLASHD_NET.2.12
  [n5]=$FLASHD_NET.3.11 [fd-east]=$FLASHD_NET.1.21 [fd-west]=$FLASHD_NET.2.21 [fd-north]=$FLASHD_NET.3.21)
FRONTDOORS=(fd-east fd-west fd-north)
STORE_GRPC_PORT=7000
FRONTDOOR_GRPC_PORT=8000

# container NAME: the container of a node or front door.
container() { echo "flashd-$1"; }

store_endpoints() {
  local out=() n
  for n in "${STORES[@]}"; do out+=("${NODE_IP[$n]}:$STORE_GRPC_PORT"); done
  (IFS=,; echo "${out[*]}")
}

frontdoor_endpoints() {
  local out=() n
  for n in "${FRONTDOORS[@]}"; do out+=("${NODE_IP[$n]}:$FRONTDOOR_GRPC_PORT"); done
  (IFS=,; echo "${out[*]}")
}

# members_of REGION: the containers (stores and front doors) in a region.
members_of() {
  local n
  for n in "${!NODE_REGION[@]}"; do
    [ "${NODE_REGION[$n]}" = "$1" ] && echo "$n"
  done | sort
}
