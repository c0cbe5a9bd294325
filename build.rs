//! Generates the micropython-sys bindings (feature `firmware`) with bindgen,
//! from the MicroPython tree the firmware is built with. The C compiler flags
//! come from the port's own CFLAGS (passed by mpy_module/mqtt/micropython.mk),
//! and the port's generated headers must already exist.
use std::env;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for var in ["MQTT_MPY_CFLAGS", "MQTT_MPY_CWD", "MQTT_MPY_HEADER", "CC"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    if env::var_os("CARGO_FEATURE_FIRMWARE").is_none() {
        return;
    }
    let header = env::var("MQTT_MPY_HEADER")
        .expect("feature `firmware` needs MQTT_MPY_HEADER (build through the port's make, see mpy_module/mqtt/micropython.mk)");
    let cflags = env::var("MQTT_MPY_CFLAGS").unwrap_or_default();
    let cwd = PathBuf::from(env::var("MQTT_MPY_CWD").unwrap_or_else(|_| ".".into()));

    // The port's flags use paths relative to the port directory.
    let mut args: Vec<String> = Vec::new();
    let mut words: Vec<String> = Vec::new();
    for w in cflags.split_whitespace() {
        // "-U NAME" and "-D NAME" come as two words
        match words.last_mut() {
            Some(last) if last == "-U" || last == "-D" || last == "-I" => last.push_str(w),
            _ => words.push(w.to_string()),
        }
    }
    for flag in &words {
        // Only what decides the headers' meaning: include paths, macros, the
        // language standard and the target's ABI flags.
        let wanted = ["-I", "-D", "-U", "-std=", "-m", "-f"].iter().any(|p| flag.starts_with(p));
        if !wanted || flag.starts_with("-fno-") || flag.starts_with("-fdata") || flag.starts_with("-ffunction") {
            continue;
        }
        if let Some(dir) = flag.strip_prefix("-I") {
            let p = Path::new(dir);
            let abs = if p.is_absolute() { p.to_path_buf() } else { cwd.join(p) };
            args.push(format!("-I{}", abs.display()));
        } else {
            // make passes shell-escaped quotes (-DNAME=\"value\")
            args.push(flag.replace("\\\"", "\""));
        }
    }
    if let Ok(target) = env::var("TARGET") {
        if env::var("HOST").ok().as_deref() != Some(target.as_str()) {
            args.push(format!("--target={target}"));
            // clang has no C library for a bare-metal target: use the
            // headers of the port's cross compiler (stdint.h, string.h, ...).
            if let Ok(cc) = env::var("CC") {
                for dir in cross_include_dirs(&cc) {
                    args.push(format!("-isystem{dir}"));
                }
            }
        }
    }

    let bindings = bindgen::Builder::default()
        .header(header)
        .clang_args(&args)
        .use_core()
        .ctypes_prefix("core::ffi")
        .layout_tests(false)
        .generate_comments(false)
        .derive_default(false)
        .allowlist_function("mp_.*|m_.*|gc_.*|qstr_.*|mqtt_c_.*")
        .allowlist_type("mp_obj_str_t|mp_obj_array_t|mp_obj_tuple_t|mp_obj_list_t|mp_obj_dict_t|mqtt_.*")
        .allowlist_var("mp_type_.*|MP_QSTR_.*|MQTT_.*|mp_const_.*_obj|mp_state_ctx")
        .allowlist_item("MP_QSTR_.*|MQTT_.*")
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .expect("bindgen could not generate the MicroPython bindings");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("mpy_bindings.rs");
    bindings.write_to_file(out).expect("write bindings");
}

/// The system include directories of a C compiler, from `CC -xc -E -v`.
fn cross_include_dirs(cc: &str) -> Vec<String> {
    let mut words = cc.split_whitespace();
    let Some(prog) = words.next() else { return Vec::new() };
    let out = std::process::Command::new(prog)
        .args(words)
        .args(["-xc", "-E", "-v", "/dev/null"])
        .output();
    let Ok(out) = out else { return Vec::new() };
    let text = String::from_utf8_lossy(&out.stderr);
    text.lines()
        .skip_while(|l| !l.starts_with("#include <...> search starts here:"))
        .skip(1)
        .take_while(|l| !l.starts_with("End of search list."))
        .map(|l| l.trim().to_string())
        .collect()
}
