#!/usr/bin/env bash
# Checks template.yaml without an AWS account or Docker, and proves that `sam build` builds
# every function:
#   1. cfn-lint template.yaml                       (no errors, no warnings)
#   2. sam validate --lint                          (SAM transform + cfn-lint, no AWS call)
#   3. sam build of an x86_64 copy of the template  (every function, via cargo-lambda, in
#                                                    SAM's debug build mode: see below)
#
# Why step 3 builds x86_64: the deployed template is arm64 (Graviton), but the CI machines carry
# only the x86_64-unknown-linux-gnu standard library and a check must not fetch toolchains, so an
# arm64 `sam build` stops at "can't find crate for `core`" (cargo-lambda first tries
# `rustup target add aarch64-unknown-linux-gnu`, a download). The check therefore builds a
# derived copy of the template that differs only in Architectures, with the same SAM build method
# (rust-cargolambda), the same `cargo lambda build --release --bin <name>` in the workspace root
# and the same CargoLambda.toml. It proves that SAM finds, builds and packages each function's
# binary; it does not produce deployable artifacts (build for deployment with a plain
# `sam build`, on a machine with the aarch64 target). The copy and its output live under
# target/sam-x86_64/, away from .aws-sam/ where `sam deploy` looks.
#
# How the CI build is kept reproducible and free of toolchain downloads (step 3 only):
#   CARGO_LAMBDA_COMPILER=cargo       link with the host toolchain; cargo-lambda's default
#                                     (cargo-zigbuild) is not needed for a native target
#   CARGO_LAMBDA_BUILD=...            --locked (never rewrite Cargo.lock) and
#                                     --skip-target-check (never run `rustup target add`)
#   SAM_BUILD_MODE=debug              `cargo lambda build` without --release: the check proves that
#                                     SAM finds, builds and packages every function; an optimised
#                                     (thin LTO) build of the AWS SDKs would add ~10 of CI's
#                                     minutes and prove nothing more about the template. A plain
#                                     `sam build` (what deploys) builds release. Without debug
#                                     info (CARGO_PROFILE_DEV_DEBUG=0) it links faster and the
#                                     bootstraps are ~47 MB instead of ~300 MB each.
# The build reuses the workspace's target directory (aws-lambda-builders points CARGO_TARGET_DIR
# at it): artifacts land in target/x86_64-unknown-linux-gnu/debug, so a rerun only recompiles
# what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

tools_bin=$(bash scripts/aws-tools.sh | tail -1)
export PATH="$tools_bin:$PATH"

# Nothing here talks to AWS: a region for the SAM translator, dummy credentials so that no real
# profile is ever picked up, no instance-metadata probing, no telemetry.
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing
unset AWS_PROFILE
export AWS_EC2_METADATA_DISABLED=true SAM_CLI_TELEMETRY=0

template=template.yaml
out=target/sam-x86_64
functions=(ApiFunction WorkerFunction WebSocketFunction ExpirerFunction AuthorizerFunction)

echo "-- cfn-lint $template"
cfn-lint --version
cfn-lint -- "$template"
echo "cfn-lint: clean"

echo "-- sam validate --lint"
sam --version
sam validate --lint --template-file "$template"

echo "-- sam build (x86_64 copy of $template)"
cat <<'EOF'
NOTE: template.yaml deploys the functions on arm64 (Architectures: [arm64]). The CI Rust
      toolchain has only the x86_64-unknown-linux-gnu standard library and this check downloads
      no toolchain, so it builds a copy switched to x86_64 to prove that every function builds
      with SAM. Build the deployable arm64 artifacts with a plain `sam build` where the
      aarch64-unknown-linux-gnu target is installed.
EOF
rm -rf "$out"
mkdir -p "$out"
python - "$template" "$out/template.yaml" <<'EOF'
import sys
from samcli.yamlhelper import yaml_dump, yaml_parse

src, dst = sys.argv[1], sys.argv[2]
with open(src) as f:
    template = yaml_parse(f.read())

switched = []
glob = template.get("Globals", {}).get("Function", {})
if glob.get("Architectures") is not None:
    if glob["Architectures"] != ["arm64"]:
        sys.exit(f"expected Globals.Function.Architectures [arm64], found {glob['Architectures']}")
    glob["Architectures"] = ["x86_64"]
    switched.append("Globals.Function")
for name, resource in template["Resources"].items():
    if resource.get("Type") != "AWS::Serverless::Function":
        continue
    props = resource.setdefault("Properties", {})
    if props.get("Architectures") is not None:
        if props["Architectures"] != ["arm64"]:
            sys.exit(f"expected {name}.Architectures [arm64], found {props['Architectures']}")
        props["Architectures"] = ["x86_64"]
        switched.append(name)
if not switched:
    sys.exit("no Architectures found to switch; is template.yaml still arm64?")
with open(dst, "w") as f:
    f.write("# GENERATED by scripts/check-template.sh from template.yaml for the CI build only:\n")
    f.write("# Architectures switched from arm64 to x86_64. Do not deploy.\n")
    f.write(yaml_dump(template))
print("Architectures arm64 -> x86_64 in: " + ", ".join(switched))
EOF

start=$(date +%s)
SAM_BUILD_MODE=debug CARGO_PROFILE_DEV_DEBUG=0 \
CARGO_LAMBDA_COMPILER=cargo \
CARGO_LAMBDA_BUILD='{locked=true,skip_target_check=true}' \
  sam build \
    --template-file "$out/template.yaml" \
    --base-dir . \
    --build-dir "$out/build" \
    --cache-dir "$out/cache" \
    --no-cached
elapsed=$(( $(date +%s) - start ))

echo "-- built functions (x86_64, debug build mode)"
for fn in "${functions[@]}"; do
  bootstrap="$out/build/$fn/bootstrap"
  [ -x "$bootstrap" ] || { echo "missing or not executable: $bootstrap" >&2; exit 1; }
  # ELF magic, and e_machine (bytes 18-19, little endian) 0x3e = x86-64.
  python -c '
import sys
head = open(sys.argv[1], "rb").read(20)
if head[:4] != b"\x7fELF" or head[18:20] != b"\x3e\x00":
    sys.exit("not an x86-64 ELF executable: " + sys.argv[1])
' "$bootstrap"
done
ls -l "$out"/build/*/bootstrap
echo "sam build: ${#functions[@]} functions in ${elapsed}s"
echo "template: OK (deployed template stays arm64; CI built x86_64, see the note above)"
