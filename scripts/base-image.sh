#!/usr/bin/env bash
# Builds two small local base images from files already on this machine, for
# building the Dockerfile where no image registry is reachable (the tests, CI):
#   pod-identity-webhook-base:runtime  the layout of gcr.io/distroless/nodejs24-debian12:
#                                      /nodejs/bin/node and the shared libraries it needs,
#                                      a nonroot user 65532, no shell, no package manager
#   pod-identity-webhook-base:build    the same plus /bin/sh, env, rm and npm, for
#                                      the Dockerfile's build stage (npm ci, npm run build);
#                                      it trusts this machine's CA bundle (registry proxies)
# Usage: scripts/base-image.sh [NODE24_BINARY]   (default: the .ci/run Node 24 cache)
# Then:  docker build --build-arg BUILD_IMAGE=pod-identity-webhook-base:build \
#          --build-arg BASE_IMAGE=pod-identity-webhook-base:runtime --network host .
set -euo pipefail
cache="${XDG_CACHE_HOME:-$HOME/.cache}/pod-identity-webhook"
node="$(readlink -f "${1:-$cache/node24/bin/node}")"
"$node" --version | grep -q '^v24\.' || { echo "base-image.sh: $node is not Node 24" >&2; exit 2; }
npm_dir="$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")"
[ -f "$npm_dir/package.json" ] || { echo "base-image.sh: npm not found" >&2; exit 2; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"

# Copies a file and every shared library it links, keeping their paths.
with_libs() {
  local f lib
  for f in "$@"; do
    mkdir -p "$root$(dirname "$f")"
    cp -L "$f" "$root$f"
    for lib in $(ldd "$f" | grep -o '/[^ ]*'); do
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    done
  done
}

mkdir -p "$root"/{nodejs/bin,etc,tmp,lib64}
chmod 1777 "$root/tmp"
cp "$node" "$root/nodejs/bin/node"
for lib in $(ldd "$node" | grep -o '/[^ ]*'); do mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; done
[ -d /lib64 ] && [ -e /lib64/ld-linux-x86-64.so.2 ] && cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ca-certificates.crt" 2>/dev/null || true

tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/nodejs/bin' \
  --change 'ENTRYPOINT ["/nodejs/bin/node"]' - pod-identity-webhook-base:runtime >/dev/null

# Build stage: add a shell (npm runs scripts with sh), env (npm's shebang) and npm.
with_libs /bin/dash /usr/bin/env /bin/rm
ln -sf dash "$root/bin/sh"
mkdir -p "$root/usr/local/lib/node_modules" "$root/usr/local/bin" "$root/root"
cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -sf /nodejs/bin/node "$root/usr/local/bin/node"
mkdir -p "$root/etc/ssl/certs" && cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/" 2>/dev/null || true
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/nodejs/bin' \
  --change 'ENV HOME=/root' \
  --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' - pod-identity-webhook-base:build >/dev/null
echo "pod-identity-webhook-base:runtime pod-identity-webhook-base:build"
