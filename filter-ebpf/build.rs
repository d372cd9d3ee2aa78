//! Rebuild the eBPF object when the bpf-linker binary changes (it is an undeclared tool
//! dependency of this crate), and let LLVM merge byte loads into wide ones: packet fields have
//! no alignment, and the verifier accepts misaligned packet loads on every architecture with
//! efficient unaligned access (x86-64, arm64). Stack accesses stay aligned (the verifier
//! requires it); the filter's own tests load the object and fail if they were not.
fn main() {
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo::rerun-if-changed={}", path.display()),
        Err(err) => println!("cargo::warning=bpf-linker not found on PATH ({err}); run ./x setup"),
    }
    println!("cargo::rustc-link-arg=--cpu-features=+allows-misaligned-mem-access");
}
