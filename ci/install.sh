#!/bin/sh
# Installs runner: the release binary for this OS and CPU, checked against
# the sha256 published beside it.
#
#   curl -fsSL https://github.com/OWNER/runner/releases/latest/download/install.sh | sh
#   curl -fsSL https://github.com/OWNER/runner/releases/latest/download/install.sh | sh -s -- --version 0.1.0 --to /usr/local/bin
#
# Flags, or the environment variables beside them (flags win):
#   --version V   RUNNER_VERSION      the release (default: the one this script
#                                     came with, else the latest)
#   --to DIR      RUNNER_INSTALL_DIR  where `runner` goes (default: ~/.local/bin)
#                 RUNNER_RELEASES     the releases page the assets are under
#                                     (default: https://github.com/OWNER/runner/releases)
#
# Nothing is replaced unless the download matches its sha256; a binary
# already at the requested version is left as it is.
set -eu

# The release workflow writes its version here in the copy it publishes.
bundled_version=""

releases="${RUNNER_RELEASES:-https://github.com/OWNER/runner/releases}"
version="${RUNNER_VERSION:-}"
dir="${RUNNER_INSTALL_DIR:-}"
from_source="cargo install --locked --git https://github.com/OWNER/runner runner"

usage() {
    cat <<'EOF'
install.sh [--version V] [--to DIR]: installs runner's release binary.
  --version V  the release (env RUNNER_VERSION; default: the latest)
  --to DIR     where runner goes (env RUNNER_INSTALL_DIR; default: ~/.local/bin)
  env RUNNER_RELEASES: the releases page (default: https://github.com/OWNER/runner/releases)
EOF
}
say() { printf 'install.sh: %s\n' "$*" >&2; }
die() {
    printf 'install.sh: error: %s\n' "$*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case "$1" in
        --version) [ $# -ge 2 ] || die "--version needs a value, e.g. --version 0.1.0"; version="$2"; shift 2 ;;
        --version=*) version="${1#*=}"; shift ;;
        --to) [ $# -ge 2 ] || die "--to needs a directory"; dir="$2"; shift 2 ;;
        --to=*) dir="${1#*=}"; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument '$1' (use --version V, --to DIR)" ;;
    esac
done

if [ -z "$dir" ]; then
    [ -n "${HOME:-}" ] || die "HOME is not set: pass --to DIR or set RUNNER_INSTALL_DIR"
    dir="$HOME/.local/bin"
fi

# Only https, when the releases page is https: a redirect cannot downgrade.
case "$releases" in
    https://*) curl_proto="=https" ;;
    *) curl_proto="=http,https" ;;
esac

if command -v curl >/dev/null 2>&1; then
    fetch() { curl --proto "$curl_proto" -fsSL --retry 3 -o "$2" "$1"; }
    # The URL a redirect ends at: GitHub's /releases/latest is a redirect to
    # /releases/tag/vX.Y.Z.
    final_url() { curl --proto "$curl_proto" -fsSLI -o /dev/null -w '%{url_effective}' "$1"; }
elif command -v wget >/dev/null 2>&1; then
    fetch() { wget -q -O "$2" "$1"; }
    final_url() {
        location=$(wget -S --spider "$1" 2>&1 | sed -n 's/^ *[Ll]ocation: *//p' | tail -n 1)
        printf '%s\n' "${location:-$1}"
    }
else
    die "neither curl nor wget is installed: install one, or build from source: $from_source"
fi

if command -v sha256sum >/dev/null 2>&1; then
    sha256() { sha256sum "$1" | awk '{ print $1 }'; }
elif command -v shasum >/dev/null 2>&1; then
    sha256() { shasum -a 256 "$1" | awk '{ print $1 }'; }
elif command -v openssl >/dev/null 2>&1; then
    sha256() { openssl dgst -sha256 -r "$1" | awk '{ print $1 }'; }
else
    die "no sha256sum, shasum or openssl to check the download with"
fi

os=$(uname -s)
arch=$(uname -m)
case "$os" in
    Linux) os=unknown-linux-musl ;;
    Darwin)
        os=apple-darwin
        # A shell under Rosetta says x86_64 on an arm64 Mac.
        [ "$(sysctl -n sysctl.proc_translated 2>/dev/null || echo 0)" = 1 ] && arch=arm64
        ;;
    *) die "no release binary for $os: build from source with $from_source" ;;
esac
case "$arch" in
    x86_64 | amd64) arch=x86_64 ;;
    aarch64 | arm64) arch=aarch64 ;;
    *) die "no release binary for $arch CPUs: build from source with $from_source" ;;
esac
target="$arch-$os"

version="${version:-$bundled_version}"
if [ -z "$version" ]; then
    tag_url=$(final_url "$releases/latest") || die "cannot reach $releases/latest to find the latest release: pass --version V"
    case "$tag_url" in
        */tag/v*) version="${tag_url##*/tag/v}" ;;
        *) die "$releases/latest did not lead to a release tag (got $tag_url): pass --version V" ;;
    esac
fi
version="${version#v}"
case "$version" in
    [0-9]*.[0-9]*.[0-9]*) ;;
    *) die "'$version' is not a release version (like 0.1.0)" ;;
esac

if [ -x "$dir/runner" ] && [ "$("$dir/runner" --version 2>/dev/null || true)" = "runner $version" ]; then
    say "runner $version is already installed at $dir/runner"
    exit 0
fi

asset="runner-$version-$target.tar.gz"
url="$releases/download/v$version/$asset"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/runner-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

say "downloading $url"
fetch "$url.sha256" "$tmp/$asset.sha256" || die "cannot download $url.sha256: is $version a release with a $target binary? (see $releases)"
fetch "$url" "$tmp/$asset" || die "cannot download $url"
expected=$(awk '{ print $1; exit }' "$tmp/$asset.sha256")
case "$expected" in
    *[!0-9a-f]* | "") die "$asset.sha256 holds no sha256: $(head -c 100 "$tmp/$asset.sha256")" ;;
esac
[ ${#expected} -eq 64 ] || die "$asset.sha256 holds no sha256: $expected"
actual=$(sha256 "$tmp/$asset")
if [ "$actual" != "$expected" ]; then
    die "sha256 mismatch for $asset: expected $expected, got $actual. The download is damaged or not the published file; nothing was installed. Try again, or build from source: $from_source"
fi

mkdir "$tmp/unpacked"
tar -xzf "$tmp/$asset" -C "$tmp/unpacked" || die "$asset is not a gzipped tar archive"
binary="$tmp/unpacked/runner-$version-$target/runner"
[ -f "$binary" ] || die "$asset holds no runner-$version-$target/runner"

mkdir -p "$dir" || die "cannot create $dir: pass --to DIR"
# Into place by a rename in the same directory: a runner already there
# (even one running) is replaced whole or not at all.
staged="$dir/.runner.install.$$"
if ! { cp "$binary" "$staged" && chmod 755 "$staged" && mv -f "$staged" "$dir/runner"; }; then
    rm -f "$staged"
    die "cannot write $dir/runner: pass --to DIR"
fi
installed=$("$dir/runner" --version 2>&1) || die "$dir/runner does not start on this machine: $installed"
say "installed $installed ($target) at $dir/runner"

case ":${PATH:-}:" in
    *":$dir:"*) ;;
    *) say "$dir is not on PATH: add it, e.g. export PATH=\"$dir:\$PATH\"" ;;
esac
