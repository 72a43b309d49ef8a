#!/bin/sh
# Adds Memorization Inspector to this user's desktop: the menu entry, the icons and the AppStream metadata,
# under ${XDG_DATA_HOME:-~/.local/share}, and a link ~/.local/bin/memorization-inspector to the program, which
# the entry starts.
#
#   packaging/install_desktop.sh [PROGRAM]
#
# PROGRAM: what to start; by default the bundle's executable
# dist/memorization-inspector/memorization-inspector when it has been built, else the `inspector` command on
# PATH (a pipx install).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
name=memorization-inspector
data=${XDG_DATA_HOME:-$HOME/.local/share}
bin=$HOME/.local/bin

program=${1:-}
if [ -z "$program" ]; then
    if [ -x "$root/dist/$name/$name" ]; then
        program=$root/dist/$name/$name
    elif command -v inspector >/dev/null 2>&1; then
        program=$(command -v inspector)
    else
        echo "install_desktop.sh: error: no program to start: build the bundle (make dist) or pipx" \
             "install the wheel, or name the program: packaging/install_desktop.sh PATH" >&2
        exit 2
    fi
fi
if [ ! -x "$program" ]; then
    echo "install_desktop.sh: error: $program is not an executable file" >&2
    exit 2
fi
program=$(cd "$(dirname "$program")" && pwd)/$(basename "$program")

mkdir -p "$bin" "$data/applications" "$data/metainfo" "$data/icons/hicolor/scalable/apps"
ln -sf "$program" "$bin/$name"
cp "$here/$name.desktop" "$data/applications/$name.desktop"
cp "$here/$name.metainfo.xml" "$data/metainfo/$name.metainfo.xml"
cp "$root/resources/icons/$name.svg" "$data/icons/hicolor/scalable/apps/$name.svg"
for size_dir in "$root"/resources/icons/hicolor/*x*; do
    size=$(basename "$size_dir")
    mkdir -p "$data/icons/hicolor/$size/apps"
    cp "$size_dir/apps/$name.png" "$data/icons/hicolor/$size/apps/$name.png"
done
# Menus and icon caches refresh by themselves on most desktops; these only speed it up where they exist.
if command -v update-desktop-database >/dev/null 2>&1; then
    update-desktop-database -q "$data/applications" || true
fi
if command -v gtk-update-icon-cache >/dev/null 2>&1; then
    gtk-update-icon-cache -q -t "$data/icons/hicolor" || true
fi

echo "installed: $data/applications/$name.desktop -> $bin/$name -> $program"
case ":$PATH:" in
    *":$bin:"*) ;;
    *) echo "note: $bin is not on PATH; the menu entry works, but add it to PATH to type $name in a shell" ;;
esac
