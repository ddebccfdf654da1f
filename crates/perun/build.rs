//! With the `libtorch` feature: the binary finds the libtorch it was linked against
//! (`scripts/with-libtorch`) at run time without LD_LIBRARY_PATH, through a run path. On
//! another machine LD_LIBRARY_PATH, searched first, points at that machine's own
//! (bench/gpu-check.sh).

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if std::env::var_os("CARGO_FEATURE_LIBTORCH").is_none() {
        return;
    }
    if let Some(libtorch) = std::env::var_os("LIBTORCH").map(std::path::PathBuf::from) {
        let lib = libtorch.join("lib");
        println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{}", lib.display());
        println!("cargo:rustc-link-arg-tests=-Wl,-rpath,{}", lib.display());
    }
}
