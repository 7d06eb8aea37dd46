# Shared by the bench scripts (sourced, not run). Expects the caller's `log` and `die`.

# Installs the Debian packages named in "$@" (those a script found missing), with sudo
# when not root, refreshing the package lists only when the install cannot go on without.
install_missing() {
    (($# == 0)) && return
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || die "missing packages $* and no sudo to install them"
        sudo=(sudo)
    fi
    log "installing missing packages: $*"
    export DEBIAN_FRONTEND=noninteractive
    if ! "${sudo[@]}" apt-get install -y --no-install-recommends "$@"; then
        log "install failed; running apt-get update and retrying"
        "${sudo[@]}" apt-get update
        "${sudo[@]}" apt-get install -y --no-install-recommends "$@"
    fi
}
