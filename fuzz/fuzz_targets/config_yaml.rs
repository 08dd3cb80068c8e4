#![no_main]
//! Arbitrary text as the router's YAML config file: `Config::from_yaml`
//! never panics; an error list is never empty and every error is one
//! located line; whatever loads is a configuration that passes its own
//! checks (`problems` is empty) and whose `config show` YAML
//! (`to_yaml_with_origins`) loads again.
use libfuzzer_sys::fuzz_target;
use scream_ice_host::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_yaml("fuzz.yaml", text) {
        Ok(config) => {
            assert!(config.problems().is_empty(), "loaded with problems");
            let shown = config.to_yaml_with_origins(true);
            if let Err(e) = Config::from_yaml("shown.yaml", &shown) {
                panic!("config show output does not load: {e:?}\n{shown}");
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "an error list is never empty");
            for e in &errors {
                let line = e.to_string();
                assert!(!line.contains('\n'), "multi-line error: {line:?}");
            }
        }
    }
});
