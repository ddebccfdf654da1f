//! With the `libtorch` feature: names the libtorch version this build links (from its
//! headers, for `perun --version` and reports) and lets this crate's tests find libtorch
//! at run time through the path they are linked with.

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if std::env::var_os("CARGO_FEATURE_LIBTORCH").is_none() {
        return;
    }
    let Some(libtorch) = std::env::var_os("LIBTORCH").map(std::path::PathBuf::from) else {
        eprintln!(
            "error: the `libtorch` feature needs LIBTORCH: run cargo through scripts/with-libtorch (after \
             scripts/install-deps --libtorch)"
        );
        std::process::exit(1);
    };
    let header = libtorch.join("include/torch/headeronly/version.h");
    println!("cargo:rerun-if-changed={}", header.display());
    let text = std::fs::read_to_string(&header).unwrap_or_default();
    let part = |name: &str| {
        text.lines().find_map(|l| l.trim().strip_prefix(&format!("#define TORCH_VERSION_{name} ")).map(str::trim))
    };
    if let (Some(major), Some(minor), Some(patch)) = (part("MAJOR"), part("MINOR"), part("PATCH")) {
        println!("cargo:rustc-env=PERUN_LIBTORCH_VERSION={major}.{minor}.{patch}");
    }
    // All of this crate's linked targets: its unit tests and its integration tests.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", libtorch.join("lib").display());
}
