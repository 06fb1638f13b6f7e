#!/usr/bin/env bash
# The OCI registry the OCI remote's tests run against: Debian's `docker-registry` (the CNCF
# distribution registry 2.8), and `htpasswd` (apache2-utils) for the auth test's bcrypt file
# where Python's crypt module is gone. Idempotent: installs only what is missing. It starts
# nothing: each test session starts its own registry on a free loopback port with its storage in
# a temp folder (tests/artifact_store/oci_registry.py), and the package's own service is not
# used (no systemd here).
#
#   bash .ci/registry.sh      # install
#   source .ci/registry.sh    # install, and export RMBUILD_TEST_REGISTRY: the registry tests
#                             # then fail, instead of skipping, if the binary is missing
_rmb_registry_main() {
  local bin=/usr/bin/docker-registry
  if [ -x "$bin" ] && command -v htpasswd >/dev/null 2>&1; then
    RMBUILD_TEST_REGISTRY="$bin"
    return 0
  fi
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
  echo "registry.sh: installing docker-registry apache2-utils (apt-get)" >&2
  "${sudo[@]}" apt-get update -qq >&2 || return 1
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    docker-registry apache2-utils >&2 || return 1
  [ -x "$bin" ] || { echo "registry.sh: $bin missing after the install" >&2; return 1; }
  RMBUILD_TEST_REGISTRY="$bin"
}

if _rmb_registry_main; then
  if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    export RMBUILD_TEST_REGISTRY
    echo "RMBUILD_TEST_REGISTRY=$RMBUILD_TEST_REGISTRY" >&2
  else
    echo "$RMBUILD_TEST_REGISTRY"
  fi
else
  echo "registry.sh: could not install the OCI registry" >&2
  [ "${BASH_SOURCE[0]}" != "$0" ] && return 1
  exit 1
fi
