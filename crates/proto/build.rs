//! Compiles the contracts in `proto/` once, for every service crate.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "identity/v1/identity.proto",
        "training/v1/training.proto",
        "telemetry/v1/telemetry.proto",
        "inventory/v1/inventory.proto",
    ]
    .map(|file| root.join(file));
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    tonic_prost_build::configure().compile_protos(&files, &[root])?;
    Ok(())
}
