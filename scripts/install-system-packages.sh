#!/usr/bin/env bash
# Installs the Debian packages the tests need, when they are missing: Chromium for the browser
# tests, shellcheck, socat, QEMU/debootstrap/cloud-image-utils for the VM test, cloud-init for
# `cloud-init schema`, systemd-analyze for the units, Node.js and npm to rebuild the JupyterLab
# extension (its test compares the build with the shipped one). Runs apt only when something is missing; needs root (or sudo).
set -euo pipefail

declare -A package_of=(
  [chromium]=chromium
  [chromedriver]=chromium-driver
  [shellcheck]=shellcheck
  [socat]=socat
  [git]=git
  [qemu-system-x86_64]=qemu-system-x86
  [qemu-img]=qemu-utils
  [debootstrap]=debootstrap
  [cloud-localds]=cloud-image-utils
  [cloud-init]=cloud-init
  [mke2fs]=e2fsprogs
  [openssl]=openssl
  [systemd-analyze]=systemd
  [node]=nodejs
  [npm]=npm
)

missing=()
for command in "${!package_of[@]}"; do
  if ! command -v "$command" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$command" ]; then
    missing+=("${package_of[$command]}")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  sudo=(sudo)
fi
echo "installing Debian packages: ${missing[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
