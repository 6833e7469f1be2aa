# Sourced by the interop folders' install.sh: one way to install pinned npm packages.
#
# npm_ci_once LABEL CHECK...: in the current folder, runs `npm ci` unless node_modules already
# holds exactly what package-lock.json pins, then runs CHECK (a command that proves the install
# loads on this Node) before recording the lock file's hash. Fails loudly at either step.
npm_ci_once() {
    local label=$1
    shift
    local stamp=node_modules/.package-lock.sha256 want
    want=$(sha256sum package-lock.json | cut -d' ' -f1)
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    if ! npm ci --no-audit --no-fund --loglevel=error; then
        echo "interop/${label}: 'npm ci' failed (is node with npm installed, and the npm registry reachable?)" >&2
        return 1
    fi
    if ! "$@"; then
        echo "interop/${label}: the installed packages do not load on node $(node --version)" >&2
        return 1
    fi
    echo "$want" >"$stamp"
}
