// Lets `halo` and the tests that link the trainer find libtorch without LD_LIBRARY_PATH, and keeps libtorch (with its CUDA parts) linked
// even though no symbol is referenced directly: without --no-as-needed CUDA is silently dropped.
fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath={lib}");
    }
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch");
}
