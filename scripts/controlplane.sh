#!/usr/bin/env bash
# Local Kubernetes control plane (etcd + kube-apiserver, no scheduler or
# controller-manager; with --with-node a kubelet and containerd) for the
# end-to-end tests.
#
#   scripts/controlplane.sh up [--with-node]
#                                   build if needed, start, print KUBECONFIG=<path> (last stdout line)
#   scripts/controlplane.sh down    stop both processes, remove the state directory
#   scripts/controlplane.sh env     print KEY=VALUE lines describing the running control plane
#   scripts/controlplane.sh status  exit 0 if running and ready, 1 otherwise
#   scripts/controlplane.sh build   only build (or reuse) the binaries
#   scripts/controlplane.sh build-node  only build (or reuse) the kubelet (node tier)
#   scripts/controlplane.sh prepare build for `npm test`; without Go: a notice and exit 0
#                                   (exit 1 when CI is set)
#   scripts/controlplane.sh run NAME [--with-node]
#                                   supervised, for tests: start a control plane of its
#                                   own in a fresh $CACHE/runs/NAME.* directory, print
#                                   KUBECONFIG=<path>, then wait for EOF on stdin (the
#                                   caller closed it, or died) or SIGTERM/SIGINT/SIGHUP,
#                                   stop both daemons and remove the directory. The
#                                   daemons die with this script even when it is
#                                   SIGKILLed (setpriv --pdeathsig), and directories
#                                   of dead runs are removed by the next `run`.
#   scripts/controlplane.sh stop-apiserver     SIGKILL kube-apiserver alone (etcd and the state stay)
#   scripts/controlplane.sh start-apiserver    start it again on the same port, wait for /readyz
#   scripts/controlplane.sh restart-apiserver  both (the same PIW_* settings as `up` apply)
#
# Binaries are built from test/controlplane/{etcd,kube-apiserver,helm} (Go modules)
# into $CACHE/bin, with GOCACHE/GOMODCACHE under $CACHE, where
# CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/pod-identity-webhook. They are rebuilt
# only when go.mod/go.sum/main.go, the Go version or the build flags change.
#
# Environment:
#   PIW_CONTROLPLANE_DIR     state directory (default $CACHE/run)
#   PIW_SA_ISSUER            --service-account-issuer (default https://kubernetes.default.svc)
#   PIW_API_AUDIENCES        --api-audiences (default: the issuer)
#   PIW_SA_SIGNING_KEY_FILE  --service-account-signing-key-file (default: generated RSA key)
#   PIW_SA_KEY_FILE          --service-account-key-file, comma-separated list allowed
#                            (default: PIW_SA_SIGNING_KEY_FILE if set, else the generated public key)
#   PIW_APISERVER_EXTRA_ARGS extra kube-apiserver flags (word-split on whitespace)
#   PIW_NODE_IMAGES          --with-node: image archives (OCI, space-separated) imported
#                            into the node's containerd before the kubelet starts; there
#                            is no registry, so the sandbox image must be among them
#   PIW_NODE_SANDBOX_IMAGE   --with-node: containerd's sandbox image (default
#                            docker.io/library/piw-pause:1)
#   PIW_NODE_NAME            --with-node: the node's name (default piw-node)
#   PIW_STARTUP_TIMEOUT      seconds to wait for etcd and for /readyz (default 600 for
#                            `up`, 0 = until the daemon exits for `run`, whose caller
#                            has a deadline of its own)
#
# Everything except the final KUBECONFIG= line (and the output of `env`)
# goes to stderr, so callers can simply take the last line of stdout.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC=$ROOT/test/controlplane
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/pod-identity-webhook
BIN=$CACHE/bin
STATE=$(realpath -m "${PIW_CONTROLPLANE_DIR:-$CACHE/run}") # absolute: printed in KUBECONFIG=
RUNS=$CACHE/runs # per-run state directories of `run`
STARTUP_TIMEOUT=${PIW_STARTUP_TIMEOUT:-600}
SUPERVISED= # set by `run`: daemons die with this script
MARKER=.piw-controlplane # marks a directory this script may delete
WITH_NODE= # --with-node: a kubelet and containerd as well
NODE_NAME=${PIW_NODE_NAME:-piw-node}
SANDBOX_IMAGE=${PIW_NODE_SANDBOX_IMAGE:-docker.io/library/piw-pause:1}
NODE_CGROUP=

log() { printf 'controlplane: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- build ---

# Bump when the build command below changes in a way that matters.
BUILD_RECIPE=1

build_one() { # name
  local name=$1 dir=$SRC/$1 ldflags="-s -w" ver hash f target=.
  [[ -f $dir/go.mod && -f $dir/go.sum && -f $dir/main.go ]] || die "missing sources in $dir"
  if [[ $name == helm ]]; then
    # The module only pins helm.sh/helm/v3 (main.go is a tools file); build its
    # command, with the release stamped into `helm version`.
    target=helm.sh/helm/v3/cmd/helm
    ver=$(awk '{ for (i = 1; i < NF; i++) if ($i == "helm.sh/helm/v3" && $(i+1) ~ /^v/) { print $(i+1); exit } }' "$dir/go.mod")
    [[ -n $ver ]] || die "cannot find the helm.sh/helm/v3 version in $dir/go.mod"
    ldflags+=" -X helm.sh/helm/v3/internal/version.version=$ver -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  fi
  if [[ $name == kube-apiserver || $name == kubelet ]]; then
    # Stamp the real release into /version (otherwise v0.0.0-master+$Format:%H$).
    ver=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$dir/go.mod")
    [[ $ver =~ ^v([0-9]+)\.([0-9]+)\. ]] || die "cannot find the k8s.io/kubernetes version in $dir/go.mod"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $pkg.gitVersion=$ver -X $pkg.gitMajor=${BASH_REMATCH[1]}"
      ldflags+=" -X $pkg.gitMinor=${BASH_REMATCH[2]} -X $pkg.gitTreeState=clean"
    done
  fi
  hash=$( { for f in go.mod go.sum main.go; do sha256sum <"$dir/$f"; done
            go version; echo "$BUILD_RECIPE $ldflags"; } | sha256sum | cut -d' ' -f1)
  if [[ -x $BIN/$name && -f $BIN/$name.sha256 && $(<"$BIN/$name.sha256") == "$hash" ]]; then
    log "$name: up to date ($BIN/$name)"
    return
  fi
  log "$name: building into $BIN (Go caches in $CACHE); a first build takes minutes (kube-apiserver: about 5 on 2 idle cores, 30 or more on a busy machine; helm: about 3) ..."
  local start=$SECONDS ticker rc=0
  # Progress while go is silent; the loop ends by itself if this script dies.
  ( while sleep 30 && kill -0 $$ 2>/dev/null; do log "$name: still building, $((SECONDS - start))s elapsed"; done ) 8>&- 9>&- &
  ticker=$!
  ( cd "$dir" &&
    env GOCACHE="$CACHE/gocache" GOMODCACHE="$CACHE/gomodcache" CGO_ENABLED=0 \
        GOFLAGS="-mod=readonly -buildvcs=false -trimpath -modcacherw" \
        "${DEATHSIG[@]}" go build -ldflags "$ldflags" -o "$BIN/$name.tmp" "$target" ) >&2 || rc=$?
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  ((rc == 0)) || die "building $name failed"
  mv -f "$BIN/$name.tmp" "$BIN/$name"
  echo "$hash" >"$BIN/$name.sha256"
  log "$name: built in $((SECONDS - start))s"
}

# Children that must not outlive this script get SIGKILL when it dies
# (prctl PR_SET_PDEATHSIG through util-linux setpriv, where there is one).
DEATHSIG=()
command -v setpriv >/dev/null && setpriv --pdeathsig KILL true 2>/dev/null && DEATHSIG=(setpriv --pdeathsig KILL)

# For `npm test`: build, or explain why the end-to-end tests will skip.
prepare() {
  reap_runs # what killed runs left behind
  if [[ -n ${E2E_KUBECONFIG:-} ]]; then
    log "E2E_KUBECONFIG is set: the end-to-end tests use that cluster; only helm is built (chart tests)"
    if command -v go >/dev/null; then
      mkdir -p "$BIN"
      exec 8>"$CACHE/build.lock"
      flock 8
      build_one helm
      exec 8>&-
    fi
    return
  fi
  if ! command -v go >/dev/null; then
    if [[ -x $BIN/etcd && -x $BIN/kube-apiserver ]]; then
      log "warning: go is not installed, the end-to-end tests use the existing binaries in $BIN unchecked"
      return
    fi
    [[ -z ${CI:-} ]] || die "go is not installed and CI is set: the end-to-end tests must run in CI (install Go, or set E2E_KUBECONFIG)"
    log "NOTICE: go is not installed, so no kube-apiserver can be built: the end-to-end tests will be skipped (install Go, or set E2E_KUBECONFIG to use a cluster)"
    return
  fi
  local start=$SECONDS
  log "building kube-apiserver, etcd and helm for the end-to-end and chart tests (cached in $BIN)"
  build
  log "control plane binaries ready ($((SECONDS - start))s)"
  prepare_node # test/e2e/node.test.ts
}

# ------------------------------------------------------------------ node ---
# The node tier (kubelet + containerd) of the end-to-end tests; see
# test/controlplane/README.md.

# Why no node can run here, or nothing: containerd needs root and cgroups.
node_unsupported() {
  ((EUID == 0)) || { echo "not root (containerd and the kubelet need root)"; return; }
  [[ -d /sys/fs/cgroup ]] || { echo "no /sys/fs/cgroup"; return; }
  command -v containerd >/dev/null && command -v ctr >/dev/null && command -v runc >/dev/null ||
    { echo "containerd or runc is not installed (apt-get install containerd runc)"; return; }
  command -v ip >/dev/null || echo "ip is not installed (apt-get install iproute2)"
}

prepare_node() {
  local why start=$SECONDS
  why=$(node_unsupported)
  if [[ -n $why ]]; then
    # Without root or cgroups containerd cannot run at all: a skip even in CI.
    [[ -z ${CI:-} || $why == not\ root* || $why == no\ /sys* ]] || die "the node end-to-end tests must run in CI, but: $why"
    log "NOTICE: the node end-to-end tests will be skipped: $why"
    return
  fi
  build_node
  log "node binaries ready ($((SECONDS - start))s)"
}

# The node: a private containerd (CRI) and the kubelet, registered as
# $NODE_NAME. Everything lives under $STATE/node: containerd's root, state and
# socket, runc's state, the kubelet's root and the pods' logs; the pods'
# cgroups under /$NODE_CGROUP in every hierarchy. Pods name the node
# (spec.nodeName; there is no scheduler) and use the host network (there is no
# CNI network; the node stays NotReady for NetworkReady, which the kubelet
# only holds against pods that need a pod network).
node_cgroup_dirs() { # every hierarchy's directory of this run's cgroup root
  local c
  for c in /sys/fs/cgroup/*/; do
    [[ -e $c/cgroup.procs ]] && echo "${c%/}/$NODE_CGROUP"
  done
  # cgroup v2 (unified at the top)
  [[ -e /sys/fs/cgroup/cgroup.procs ]] && echo "/sys/fs/cgroup/$NODE_CGROUP"
  return 0
}

start_node() {
  local d=$STATE/node why port sock deadline img c ip
  why=$(node_unsupported)
  [[ -z $why ]] || die "--with-node: no node can run here: $why"
  [[ -x $BIN/kubelet ]] || die "--with-node: no kubelet in $BIN (run: $0 build-node)"
  mkdir -p "$d"/{cni/bin,cni/conf,kubelet,pod-logs}
  sock=$d/containerd.sock
  NODE_CGROUP=piw-$(basename "$STATE")
  echo "$NODE_CGROUP" >"$STATE/node.cgroup"
  # The kubelet wants its cgroup root to exist; a cpuset child starts with no
  # CPUs or memory nodes, so it gets its parent's.
  for c in $(node_cgroup_dirs); do
    mkdir -p "$c"
    if [[ $c == */cpuset/* ]]; then
      cat "$(dirname "$c")/cpuset.cpus" >"$c/cpuset.cpus"
      cat "$(dirname "$c")/cpuset.mems" >"$c/cpuset.mems"
    fi
  done
  cat >"$d/containerd.toml" <<TOML
version = 2
root = "$d/containerd/root"
state = "$d/containerd/state"
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$SANDBOX_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # Without CAP_SYS_RESOURCE (a container), runc cannot give the sandbox the
  # negative OOM score the kubelet asks for: no lower than containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$d/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$d/cni/bin"
    conf_dir = "$d/cni/conf"
TOML
  log "starting containerd ($sock)"
  start_daemon containerd --config "$d/containerd.toml"
  deadline=$((STARTUP_TIMEOUT > 0 ? SECONDS + STARTUP_TIMEOUT : -1))
  until ctr --address "$sock" version >/dev/null 2>&1; do
    pid_alive "$STATE/containerd.pid" containerd || die "containerd exited (log: $STATE/containerd.log)"
    ((deadline < 0 || SECONDS < deadline)) || die "containerd not serving after ${STARTUP_TIMEOUT}s"
    sleep 0.2
  done
  # No registry: the images (the sandbox image among them) come as archives.
  for img in ${PIW_NODE_IMAGES:-}; do
    log "importing $img"
    ctr --address "$sock" -n k8s.io images import "$img" >&2 || die "importing $img into containerd failed"
  done
  ctr --address "$sock" -n k8s.io images ls -q 2>/dev/null | grep -qxF "$SANDBOX_IMAGE" ||
    log "warning: the sandbox image $SANDBOX_IMAGE is not among PIW_NODE_IMAGES; no pod can start (there is no registry)"
  # The kubelet refuses a loopback node IP, and kube-apiserver reaches it
  # (logs, exec) at that address: the address of the default route.
  ip=$(ip -4 route get 192.0.2.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
  [[ -n $ip && $ip != 127.* ]] || die "--with-node: no non-loopback IPv4 address for the node (the kubelet needs one)"
  port=$(free_port)
  cat >"$d/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ip
port: $port
readOnlyPort: 0
healthzPort: 0
# kube-apiserver reaches the kubelet (logs, exec) as anonymous.
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
  x509: {clientCAFile: "$STATE/pki/ca.crt"}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
cgroupRoot: /$NODE_CGROUP
failSwapOn: false
containerRuntimeEndpoint: unix://$sock
podLogsDir: $d/pod-logs
# The images are imported, never pulled: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {}
YAML
  write_kubeconfig "$(<"$STATE/apiserver.port")" node "$d/kubelet.kubeconfig"
  log "starting the kubelet (node $NODE_NAME, $ip:$port)"
  start_daemon kubelet \
    --config="$d/kubelet.yaml" \
    --kubeconfig="$d/kubelet.kubeconfig" \
    --root-dir="$d/kubelet" \
    --cert-dir="$d/kubelet/pki" \
    --hostname-override="$NODE_NAME" \
    --node-ip="$ip"
  # Ready to take pods once the kubelet has registered its node.
  until curl_api "/api/v1/nodes/$NODE_NAME" >/dev/null 2>&1; do
    pid_alive "$STATE/kubelet.pid" kubelet || die "the kubelet exited (log: $STATE/kubelet.log)"
    ((deadline < 0 || SECONDS < deadline)) || die "node $NODE_NAME not registered after ${STARTUP_TIMEOUT}s"
    sleep 0.25
  done
  log "node $NODE_NAME registered"
}

# Stops the node's kubelet, containers, shims and containerd, and removes its
# cgroups and mounts. The containers and their shims are not children of
# containerd (they outlive it), so they are found by runc's state and by the
# socket address on their command lines.
stop_node() {
  local d=$STATE/node id pid c f arg args ns i
  stop_proc "$STATE/kubelet.pid" kubelet
  # containerd, while it runs, stops its tasks and shims cleanly (a killed
  # shim leaves its socket in /run/containerd/s).
  if pid_alive "$STATE/containerd.pid" containerd; then
    for id in $(timeout 10 ctr --address "$d/containerd.sock" -n k8s.io tasks ls -q 2>/dev/null); do
      timeout 10 ctr --address "$d/containerd.sock" -n k8s.io tasks delete --force "$id" >/dev/null 2>&1 || true
    done
  fi
  # What is left (containerd dead or stuck): the containers by runc's state,
  # then their shims.
  if [[ -d $d/runc ]]; then
    for id in $(runc --root "$d/runc" list -q 2>/dev/null); do
      runc --root "$d/runc" delete --force "$id" >/dev/null 2>&1 || true
    done
  fi
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}; pid=${pid%/cmdline}
    args=()
    while IFS= read -r -d '' arg; do args+=("$arg"); done <"$f" 2>/dev/null || continue
    [[ " ${args[*]} " == *" -address $d/containerd.sock "* ]] || continue
    kill -KILL "$pid" 2>/dev/null || true
    # A shim's socket is /run/containerd/s/sha256(address/namespace/id) (containerd 1.6, 1.7).
    ns= id=
    for ((i = 0; i < ${#args[@]} - 1; i++)); do
      case ${args[i]} in -namespace) ns=${args[i + 1]} ;; -id) id=${args[i + 1]} ;; esac
    done
    [[ -z $ns || -z $id ]] || rm -f "/run/containerd/s/$(printf '%s' "$d/containerd.sock/$ns/$id" | sha256sum | cut -d' ' -f1)"
  done
  stop_proc "$STATE/containerd.pid" containerd
  if [[ -f $STATE/node.cgroup ]]; then
    NODE_CGROUP=$(<"$STATE/node.cgroup")
    for c in $(node_cgroup_dirs); do
      [[ -d $c ]] || continue
      # What is left in them dies, then the directories go, deepest first.
      find "$c" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
      find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
  fi
  # The kubelet's only files outside its root: log symlinks, and the device
  # plugin socket (a fixed path, taken over by the latest kubelet started).
  for f in /var/log/containers/*.log; do
    [[ -L $f && $(readlink "$f") == "$d/"* ]] && rm -f "$f"
  done
  rm -f /var/lib/kubelet/device-plugins/kubelet.sock
  rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet /var/log/containers 2>/dev/null || true
  if [[ -d $d ]]; then
    # Mounts under the node's directory (snapshots, shm, volumes), deepest first.
    awk -v p="$d/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  fi
}

build_node() {
  command -v go >/dev/null || die "go is not installed: cannot build the kubelet"
  mkdir -p "$BIN"
  exec 8>"$CACHE/build.lock"
  flock 8
  build_one kubelet
  exec 8>&-
}

build() {
  if ! command -v go >/dev/null; then
    [[ -x $BIN/etcd && -x $BIN/kube-apiserver ]] || die "go is not installed and $BIN has no binaries"
    log "warning: go is not installed, using the existing binaries in $BIN unchecked"
    return
  fi
  mkdir -p "$BIN"
  # Serialize concurrent builds (e.g. parallel test runs). fd 8 is closed
  # again before any daemon is started, so no daemon inherits the lock.
  exec 8>"$CACHE/build.lock"
  flock 8
  build_one etcd
  build_one kube-apiserver
  build_one helm # chart tests (test/unit/chart.test.ts, test/e2e/helm.test.ts)
  exec 8>&-
}

# ------------------------------------------------------------- helpers ---

free_port() {
  if command -v python3 >/dev/null; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
    return
  fi
  local p i
  for i in $(seq 1 100); do
    p=$((20000 + RANDOM % 40000))
    if ! (: <"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  die "no free port found"
}

# Running and not a zombie: the daemons are reparented to PID 1, which may
# take a while to reap them, and `kill -0` succeeds on zombies.
proc_running() { # pid
  local st
  kill -0 "$1" 2>/dev/null || return 1
  st=$(cat "/proc/$1/stat" 2>/dev/null) || return 0 # no /proc: trust kill -0
  st=${st##*) }
  [[ ${st%% *} != Z ]]
}

# The executable of a daemon: ours in $BIN, containerd the system's.
daemon_exe() { # name
  if [[ $1 == containerd ]]; then realpath "$(command -v containerd)"; else echo "$BIN/$1"; fi
}

pid_alive() { # pidfile binary-name
  local pid
  [[ -f $1 ]] || return 1
  pid=$(<"$1")
  [[ $pid =~ ^[0-9]+$ ]] && proc_running "$pid" || return 1
  # Guard against pid reuse: the process must be our binary.
  [[ $(readlink "/proc/$pid/exe" 2>/dev/null || true) == "$(daemon_exe "$2")"* ]] ||
    [[ ! -e /proc/$pid ]] # no /proc: trust kill -0
}

# `down` throws all state away, so there is no point in a graceful shutdown
# (which takes kube-apiserver and etcd 2-3 s each): SIGKILL and wait.
stop_proc() { # pidfile binary-name
  local pidfile=$1 pid i
  if pid_alive "$pidfile" "$2"; then
    pid=$(<"$pidfile")
    kill -KILL "$pid" 2>/dev/null || true
    # SIGKILL cannot be refused, but on a busy machine dying can take a while.
    i=0
    while proc_running "$pid"; do
      ((++i % 100)) || log "$2 ($pid) has not exited $((i / 10))s after SIGKILL, still waiting"
      sleep 0.1
    done
  fi
  rm -f "$pidfile"
}

tail_logs() {
  local f
  for f in "$STATE"/etcd.log "$STATE"/kube-apiserver.log "$STATE"/containerd.log "$STATE"/kubelet.log; do
    [[ -f $f ]] || continue
    printf '\n===== last 40 lines of %s =====\n' "$f" >&2
    tail -n 40 "$f" >&2
  done
}

curl_api() { # path
  curl -fsS --max-time 5 --cacert "$STATE/pki/ca.crt" \
    --cert "$STATE/pki/admin.crt" --key "$STATE/pki/admin.key" \
    "https://127.0.0.1:$(<"$STATE/apiserver.port")$1"
}

is_up() {
  pid_alive "$STATE/etcd.pid" etcd && pid_alive "$STATE/kube-apiserver.pid" kube-apiserver &&
    [[ -f $STATE/kubeconfig && -f $STATE/apiserver.port ]] &&
    [[ $(curl_api /readyz 2>/dev/null) == ok ]]
}

start_daemon() { # name args... ; logs to $STATE/name.log
  local name=$1; shift
  # setsid: not killed with the caller's process group; fds 8/9 (locks)
  # closed; stdin/stdout/stderr detached so callers reading our stdout
  # through a pipe see EOF when this script exits.
  # The log holds the last attempt only (port-clash detection greps it).
  # Supervised (`run`): no setsid, and SIGKILL when this script dies.
  local exe
  exe=$(daemon_exe "$name")
  if [[ -n $SUPERVISED ]]; then
    "${DEATHSIG[@]}" "$exe" "$@" </dev/null >"$STATE/$name.log" 2>&1 6>&- 7>&- 8>&- 9>&- &
  else
    setsid "$exe" "$@" </dev/null >"$STATE/$name.log" 2>&1 8>&- 9>&- &
  fi
  local pid=$! i
  disown "$pid" # no "Killed" job notices from this shell
  echo "$pid" >"$STATE/$name.pid"
  # Until the forked shell has exec'd the binary, /proc/$pid/exe is bash and
  # pid_alive would say "not ours": wait for the exec (or the exit).
  for i in $(seq 1 100); do
    pid_alive "$STATE/$name.pid" "$name" || ! proc_running "$pid" && return
    sleep 0.05
  done
}

# ----------------------------------------------------------------- pki ---

gen_pki() {
  local d=$STATE/pki
  mkdir -p "$d"
  (
    cd "$d"
    umask 077
    ossl() { openssl "$@" 2>/dev/null || { openssl "$@"; exit 1; }; }
    ec() { ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
    ec ca.key
    ossl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=piw-test-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out ca.crt
    issue() { # name subject extensions
      ec "$1.key"
      ossl req -new -key "$1.key" -subj "$2" -out "$1.csr"
      printf '%s\n' "$3" >"$1.ext"
      ossl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
        -sha256 -days 3650 -extfile "$1.ext" -out "$1.crt"
      rm -f "$1.csr" "$1.ext"
    }
    issue apiserver "/CN=kube-apiserver" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    issue admin "/O=system:masters/CN=piw-admin" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    # The node's kubelet (Node authorizer: group system:nodes, user system:node:NAME).
    issue node "/O=system:nodes/CN=system:node:$NODE_NAME" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    # Service-account token signing key (RS256, what AWS STS expects).
    ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
    ossl pkey -in sa.key -pubout -out sa.pub
    chmod 644 ca.crt apiserver.crt admin.crt sa.pub
  ) || die "generating certificates with openssl failed"
}

write_kubeconfig() { # port [client (pki name) [file]]
  local d=$STATE/pki b64 client=${2:-admin} out=${3:-$STATE/kubeconfig}
  b64() { base64 <"$1" | tr -d '\n'; }
  (
    umask 077
    cat >"$out.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: piw
  cluster:
    server: https://127.0.0.1:$1
    certificate-authority-data: $(b64 "$d/ca.crt")
users:
- name: piw-admin
  user:
    client-certificate-data: $(b64 "$d/$client.crt")
    client-key-data: $(b64 "$d/$client.key")
contexts:
- name: piw
  context:
    cluster: piw
    user: piw-admin
    namespace: default
current-context: piw
EOF
  )
  mv -f "$out.tmp" "$out"
}

# ------------------------------------------------------------- daemons ---

start_etcd() { # -> 0 ready, 2 port clash (retry), 1 other failure
  local cport pport deadline
  cport=$(free_port); pport=$(free_port)
  [[ $cport != "$pport" ]] || return 2
  echo "$cport" >"$STATE/etcd.port"
  log "starting etcd on 127.0.0.1:$cport"
  start_daemon etcd \
    --name=piw \
    --data-dir="$STATE/etcd" \
    --listen-client-urls="http://127.0.0.1:$cport" \
    --advertise-client-urls="http://127.0.0.1:$cport" \
    --listen-peer-urls="http://127.0.0.1:$pport" \
    --initial-advertise-peer-urls="http://127.0.0.1:$pport" \
    --initial-cluster="piw=http://127.0.0.1:$pport" \
    --initial-cluster-state=new \
    --unsafe-no-fsync \
    --log-level=warn
  deadline=$((STARTUP_TIMEOUT > 0 ? SECONDS + STARTUP_TIMEOUT : -1))
  while ((deadline < 0 || SECONDS < deadline)); do
    if ! pid_alive "$STATE/etcd.pid" etcd; then
      rm -f "$STATE/etcd.pid"
      grep -q 'address already in use' "$STATE/etcd.log" 2>/dev/null && return 2
      return 1
    fi
    [[ $(curl -fsS --max-time 2 "http://127.0.0.1:$cport/health" 2>/dev/null) == *'"health":"true"'* ]] && return 0
    sleep 0.2
  done
  log "etcd not healthy after ${STARTUP_TIMEOUT}s"
  return 1
}

# Service-account settings; the caller's key files are resolved to absolute
# paths and checked before anything is started.
sa_settings() {
  local k keys
  ISSUER=${PIW_SA_ISSUER:-https://kubernetes.default.svc}
  AUDIENCES=${PIW_API_AUDIENCES:-$ISSUER}
  SA_SIGN=${PIW_SA_SIGNING_KEY_FILE:-$STATE/pki/sa.key}
  SA_KEYS=()
  IFS=, read -r -a keys <<<"${PIW_SA_KEY_FILE:-${PIW_SA_SIGNING_KEY_FILE:-$STATE/pki/sa.pub}}"
  if [[ -n ${PIW_SA_SIGNING_KEY_FILE:-} ]]; then
    [[ -f $SA_SIGN ]] || die "PIW_SA_SIGNING_KEY_FILE=$SA_SIGN does not exist"
    SA_SIGN=$(realpath "$SA_SIGN")
  fi
  for k in "${keys[@]}"; do
    if [[ -n ${PIW_SA_KEY_FILE:-}${PIW_SA_SIGNING_KEY_FILE:-} ]]; then
      [[ -f $k ]] || die "service-account key file $k (PIW_SA_KEY_FILE) does not exist"
      k=$(realpath "$k")
    fi
    SA_KEYS+=("$k")
  done
  # What a running control plane must have been started with to be reused
  # by `up`: the settings above, the caller's key contents, extra flags.
  FINGERPRINT=$(
    printf '%s\n' "$ISSUER" "$AUDIENCES" "${PIW_APISERVER_EXTRA_ARGS:-}" "node=$WITH_NODE ${PIW_NODE_IMAGES:-}"
    if [[ -n ${PIW_SA_KEY_FILE:-}${PIW_SA_SIGNING_KEY_FILE:-} ]]; then
      sha256sum "$SA_SIGN" "${SA_KEYS[@]}"
    fi
  )
}

start_apiserver() { # -> 0 ready, 2 port clash (retry), 1 other failure
  local port deadline k extra=()
  local d=$STATE/pki
  port=${APISERVER_PORT:-$(free_port)} # start-apiserver keeps the port clients know
  echo "$port" >"$STATE/apiserver.port"
  for k in "${SA_KEYS[@]}"; do extra+=("--service-account-key-file=$k"); done
  # shellcheck disable=SC2206 # word splitting intended
  [[ -n ${PIW_APISERVER_EXTRA_ARGS:-} ]] && extra+=(${PIW_APISERVER_EXTRA_ARGS})
  log "starting kube-apiserver on https://127.0.0.1:$port (issuer $ISSUER)"
  start_daemon kube-apiserver \
    --etcd-servers="http://127.0.0.1:$(<"$STATE/etcd.port")" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --secure-port="$port" \
    --tls-cert-file="$d/apiserver.crt" \
    --tls-private-key-file="$d/apiserver.key" \
    --client-ca-file="$d/ca.crt" \
    --authorization-mode=Node,RBAC \
    --service-account-issuer="$ISSUER" \
    --service-account-signing-key-file="$SA_SIGN" \
    --api-audiences="$AUDIENCES" \
    --service-cluster-ip-range=10.96.0.0/16 \
    --enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook \
    --endpoint-reconciler-type=none \
    --allow-privileged=true \
    --kubelet-preferred-address-types=InternalIP \
    --profiling=false \
    "${extra[@]}"
  deadline=$((STARTUP_TIMEOUT > 0 ? SECONDS + STARTUP_TIMEOUT : -1))
  while ((deadline < 0 || SECONDS < deadline)); do
    if ! pid_alive "$STATE/kube-apiserver.pid" kube-apiserver; then
      rm -f "$STATE/kube-apiserver.pid"
      grep -q 'address already in use' "$STATE/kube-apiserver.log" 2>/dev/null && return 2
      return 1
    fi
    [[ $(curl_api /readyz 2>/dev/null) == ok ]] && return 0
    sleep 0.25
  done
  log "kube-apiserver not ready after ${STARTUP_TIMEOUT}s"
  return 1
}

# ------------------------------------------------------------ commands ---

lock_state() { # serialize up/down on the same state directory
  mkdir -p "$(dirname "$STATE")"
  exec 9>"$(dirname "$STATE")/.$(basename "$STATE").lock"
  flock 9
}

stop_all() {
  [[ ! -d $STATE/node ]] || stop_node
  stop_proc "$STATE/kube-apiserver.pid" kube-apiserver
  stop_proc "$STATE/etcd.pid" etcd
}

cmd_down() {
  [[ -d $STATE ]] || { log "not running"; return 0; }
  stop_all
  if [[ -f $STATE/$MARKER ]]; then
    rm -rf "$STATE"
  else # not created by us: only remove what we would have created
    rm -rf "$STATE"/{etcd,pki,node} "$STATE"/*.{log,pid,port} "$STATE"/{kubeconfig,env,config,node.cgroup}
  fi
  log "stopped"
}

# start_retrying NAME FUNCTION: FUNCTION returns 2 on a port clash (another
# process took the free port first); try again with new ports, up to 5 times.
start_retrying() {
  local name=$1 start=$2 i rc=0
  for i in 1 2 3 4 5; do
    rc=0; "$start" || rc=$?
    ((rc == 2)) || break
    log "$name port clash, retrying"
  done
  ((rc == 0)) || die "$name failed to start (log: $STATE/$name.log)"
}

cmd_up() {
  local start rc i
  build
  [[ -z $WITH_NODE ]] || build_node
  start=$SECONDS
  lock_state
  sa_settings
  if is_up; then
    if [[ -f $STATE/config && $(<"$STATE/config") == "$FINGERPRINT" ]]; then
      log "already running"
      echo "KUBECONFIG=$STATE/kubeconfig"
      return
    fi
    log "running with other PIW_* settings, restarting"
  fi
  # Stale or half-running state: start from scratch.
  cmd_down 2>/dev/null
  # Only a directory created here is marked as ours to delete on `down`.
  if [[ ! -d $STATE ]] || [[ -z $(ls -A "$STATE") ]]; then
    mkdir -p "$STATE"
    : >"$STATE/$MARKER"
  fi
  gen_pki
  # On failure: show the logs, stop what was started, keep the logs.
  trap 'rc=$?; if ((rc)); then tail_logs; stop_all; fi' EXIT
  start_retrying etcd start_etcd
  start_retrying kube-apiserver start_apiserver
  write_kubeconfig "$(<"$STATE/apiserver.port")"
  [[ -z $WITH_NODE ]] || start_node
  write_env
  printf '%s\n' "$FINGERPRINT" >"$STATE/config"
  trap - EXIT
  log "ready in $((SECONDS - start))s ($STATE)"
  echo "KUBECONFIG=$STATE/kubeconfig"
}

# Directories of `run`s whose owner is gone (its lock on .owner is free):
# stop what is left of their daemons and remove them. Caller holds $RUNS/.lock.
reap_stale() {
  local d fd
  for d in "$RUNS"/*/; do
    d=${d%/}
    [[ -f $d/$MARKER ]] || continue
    exec {fd}>>"$d/.owner"
    if flock -n "$fd"; then
      log "removing the state of a run that ended without cleaning up: $d"
      STATE=$d stop_all
      rm -rf "$d"
    fi
    exec {fd}>&-
  done
}

reap_runs() {
  [[ -d $RUNS ]] || return 0
  exec 6>"$RUNS/.lock"
  flock 6
  reap_stale
  exec 6>&-
}

RUN_READY=
run_cleanup() { # EXIT trap of `run`: logs if it never got ready, stop, remove the directory
  local rc=$?
  # Not interrupted again while cleaning up (a pending SIGTERM would otherwise
  # run its trap in the command substitutions below).
  trap '' TERM INT HUP
  set +e
  ((rc == 0)) || [[ -n $RUN_READY ]] || tail_logs
  stop_all
  rm -rf "$STATE"
  exit "$rc"
}

cmd_run() { # name
  local name=${1:-e2e}
  [[ $name =~ ^[A-Za-z0-9._-]+$ ]] || die "run: NAME must be letters, digits, . _ -"
  SUPERVISED=1
  STARTUP_TIMEOUT=${PIW_STARTUP_TIMEOUT:-0}
  build
  [[ -z $WITH_NODE ]] || build_node
  mkdir -p "$RUNS"
  exec 6>"$RUNS/.lock"
  flock 6
  reap_stale
  STATE=$(mktemp -d "$RUNS/$name.XXXXXX")
  : >"$STATE/$MARKER"
  # Held until this script ends, however it ends: a free lock means a dead owner.
  exec 7>"$STATE/.owner"
  flock 7
  echo $$ >&7
  exec 6>&-
  trap run_cleanup EXIT
  trap 'exit 143' TERM
  trap 'exit 130' INT
  trap 'exit 129' HUP
  sa_settings
  gen_pki
  start_retrying etcd start_etcd
  start_retrying kube-apiserver start_apiserver
  write_kubeconfig "$(<"$STATE/apiserver.port")"
  [[ -z $WITH_NODE ]] || start_node
  write_env
  RUN_READY=1
  log "ready ($STATE)"
  echo "KUBECONFIG=$STATE/kubeconfig"
  # Until the caller closes our stdin or dies (EOF either way).
  while read -r _; do :; done
}

write_env() { # what `env` prints, fixed at `up` time
  local IFS=,
  printf '%s=%q\n' \
    KUBECONFIG "$STATE/kubeconfig" \
    PIW_CONTROLPLANE_DIR "$STATE" \
    PIW_APISERVER_URL "https://127.0.0.1:$(<"$STATE/apiserver.port")" \
    PIW_CA_FILE "$STATE/pki/ca.crt" \
    PIW_ETCD_URL "http://127.0.0.1:$(<"$STATE/etcd.port")" \
    PIW_SA_ISSUER "$ISSUER" \
    PIW_API_AUDIENCES "$AUDIENCES" \
    PIW_SA_SIGNING_KEY_FILE "$SA_SIGN" \
    PIW_SA_KEY_FILE "${SA_KEYS[*]}" \
    PIW_NODE_NAME "${WITH_NODE:+$NODE_NAME}" \
    >"$STATE/env"
}

cmd_env() {
  is_up && [[ -f $STATE/env ]] || die "control plane is not running (run: $0 up)"
  cat "$STATE/env"
}

# Outage tests: kube-apiserver goes away and comes back; etcd keeps the data.
cmd_stop_apiserver() {
  [[ -f $STATE/apiserver.port ]] || die "control plane is not running (run: $0 up)"
  stop_proc "$STATE/kube-apiserver.pid" kube-apiserver
  log "kube-apiserver stopped"
}

cmd_start_apiserver() {
  local rc=0
  [[ -f $STATE/apiserver.port ]] && pid_alive "$STATE/etcd.pid" etcd || die "control plane is not running (run: $0 up)"
  if pid_alive "$STATE/kube-apiserver.pid" kube-apiserver; then log "kube-apiserver already running"; return; fi
  sa_settings
  APISERVER_PORT=$(<"$STATE/apiserver.port") start_apiserver || rc=$?
  ((rc == 0)) || { tail_logs; die "kube-apiserver failed to start again (log: $STATE/kube-apiserver.log)"; }
  log "kube-apiserver ready again on port $(<"$STATE/apiserver.port")"
}

# --with-node (up, run): the node tier as well.
args=()
for a in "$@"; do
  if [[ $a == --with-node ]]; then WITH_NODE=1; else args+=("$a"); fi
done
set -- "${args[@]}"

case ${1:-} in
  up) cmd_up ;;
  down) lock_state; cmd_down ;;
  env) cmd_env ;;
  status) is_up && log "running" || { log "not running"; exit 1; } ;;
  build) build ;;
  build-node) build_node ;;
  prepare) prepare ;;
  run) cmd_run "${2:-}" ;;
  stop-apiserver) lock_state; cmd_stop_apiserver ;;
  start-apiserver) lock_state; cmd_start_apiserver ;;
  restart-apiserver) lock_state; cmd_stop_apiserver; cmd_start_apiserver ;;
  *) echo "usage: $0 up [--with-node]|down|env|status|build|build-node|prepare|run NAME [--with-node]|stop-apiserver|start-apiserver|restart-apiserver" >&2; exit 2 ;;
esac
