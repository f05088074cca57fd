#!/bin/sh
# AppImage recipe: wraps the PyInstaller bundle (make package) in an AppDir, then calls
# appimagetool (https://github.com/AppImage/appimagetool, not packaged by Debian) when it
# is on PATH. Without it the AppDir is left in build/LoRALoom.AppDir (runnable as is).
#   packaging/linux/build-appimage.sh [dist/loraloom]
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUNDLE=${1:-$ROOT/dist/loraloom}
APP_ID=io.github.loraloom.LoRALoom
APPDIR=$ROOT/build/LoRALoom.AppDir
LINUX=$ROOT/packaging/linux

[ -x "$BUNDLE/loraloom" ] || { echo "$BUNDLE/loraloom not found: run make package first" >&2; exit 1; }
rm -rf "$APPDIR"
mkdir -p "$APPDIR/usr/bin" "$APPDIR/usr/share/applications" "$APPDIR/usr/share/metainfo" \
         "$APPDIR/usr/share/mime/packages" "$APPDIR/usr/share/icons"
cp -a "$BUNDLE" "$APPDIR/usr/lib-loraloom"
ln -s ../lib-loraloom/loraloom "$APPDIR/usr/bin/loraloom"
cp "$LINUX/$APP_ID.desktop" "$APPDIR/usr/share/applications/"
cp "$LINUX/$APP_ID.desktop" "$APPDIR/"
cp "$LINUX/$APP_ID.metainfo.xml" "$APPDIR/usr/share/metainfo/"
cp "$LINUX/$APP_ID.mime.xml" "$APPDIR/usr/share/mime/packages/"
cp -a "$LINUX/icons/hicolor" "$APPDIR/usr/share/icons/"
cp "$LINUX/icons/hicolor/256x256/apps/$APP_ID.png" "$APPDIR/$APP_ID.png"
cat > "$APPDIR/AppRun" <<'RUN'
#!/bin/sh
# The AppImage is mounted at a new path each run: the bundle finds everything relative to itself.
HERE=$(dirname "$(readlink -f "$0")")
exec "$HERE/usr/lib-loraloom/loraloom" "$@"
RUN
chmod +x "$APPDIR/AppRun"

if command -v appimagetool >/dev/null 2>&1; then
  ARCH=$(uname -m) appimagetool "$APPDIR" "$ROOT/dist/LoRA_Loom-$(uname -m).AppImage"
else
  echo "appimagetool not on PATH: AppDir left at $APPDIR (run $APPDIR/AppRun)"
fi
