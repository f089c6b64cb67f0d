#!/usr/bin/env bash
# Fill clients/go/vendor/ from Debian's Go sources, so the Go client builds offline with -mod=vendor.
#
# Why: the CI and development machines reach no Go module proxy, but Debian packages gRPC for Go
# (golang-google-grpc-dev and friends, sources under /usr/share/gocode/src). go.mod names the upstream
# versions Debian packaged, so with a proxy `go build` works as usual; without one, this script copies
# exactly the packages the client imports (and their imports, tests included) into vendor/ and writes
# vendor/modules.txt, which is all `go build -mod=vendor` reads. vendor/ is not committed.
#
#   usage: clients/go/vendor-debian.sh          env: GOCODE (default /usr/share/gocode/src)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
gocode=${GOCODE:-/usr/share/gocode/src}
module=$(awk '$1 == "module" {print $2; exit}' "$here/go.mod")
[[ -d "$gocode/google.golang.org/grpc" ]] || {
    echo "$0: no gRPC sources in $gocode: apt-get install golang-google-grpc-dev" >&2; exit 1; }

# The import closure, computed in GOPATH mode against Debian's tree with a copy of the client in it.
gopath=$(mktemp -d)
trap 'rm -rf "$gopath"' EXIT
mkdir -p "$gopath/src/$module"
cp -r "$here/." "$gopath/src/$module/"
rm -rf "$gopath/src/$module/vendor"
# shellcheck disable=SC2016
deps=$(cd "$gopath/src/$module" && GO111MODULE=off GOPATH="$gopath:$(dirname "$gocode")" GOFLAGS= \
    go list -deps -test -f '{{if not .Standard}}{{.ImportPath}}{{end}}' ./... | grep -v "^$module" | sort -u)

# Required modules (path version), longest path first so a package maps to its innermost module.
mods=$(awk '/^require *\(/{r=1; next} r && /^\)/{r=0} r && NF>=2 {print $1, $2} /^require [^(]/{print $2, $3}' \
    "$here/go.mod" | awk '{print length($1), $0}' | sort -rn | cut -d' ' -f2-)

rm -rf "$here/vendor"
mkdir -p "$here/vendor"
declare -A pkgs_of
for pkg in $deps; do
    mod=""
    while read -r path _; do
        if [[ "$pkg" == "$path" || "$pkg" == "$path/"* ]]; then mod=$path; break; fi
    done <<< "$mods"
    [[ -n "$mod" ]] || { echo "$0: $pkg is not in a module go.mod requires; add it there" >&2; exit 1; }
    mkdir -p "$here/vendor/$pkg"
    find "$gocode/$pkg" -maxdepth 1 -type f ! -name '*_test.go' -exec cp {} "$here/vendor/$pkg/" \;
    pkgs_of[$mod]+="$pkg"$'\n'
done

# modules.txt: every required module (explicit: go.mod lists them all), then its packages.
{
    while read -r path version; do
        echo "# $path $version"
        gov=$(awk '$1 == "go" {print $2; exit}' "$gocode/$path/go.mod" 2>/dev/null || true)
        if [[ -n "$gov" ]]; then echo "## explicit; go $gov"; else echo "## explicit"; fi
        printf '%s' "${pkgs_of[$path]:-}" | sort
    done < <(echo "$mods" | sort)
} > "$here/vendor/modules.txt"
echo "vendored $(echo "$deps" | wc -l) packages from $gocode into $here/vendor"
