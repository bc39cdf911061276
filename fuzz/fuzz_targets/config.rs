//! Config loader on arbitrary text with an empty environment: never panics; a config it accepts
//! serializes and loads again to an accepted config.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_authz_core::config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = config::from_str_with_env(text, Vec::new()) else {
        return;
    };
    // Print (as JSON, which is YAML) and parse again: must still be accepted.
    if let Ok(printed) = serde_json::to_string(&cfg) {
        let again = config::from_str_with_env(&printed, Vec::new());
        assert!(again.is_ok(), "printed config refused: {printed}");
        let reprinted = serde_json::to_string(&again.ok()).ok();
        assert_eq!(reprinted, serde_json::to_string(&Some(cfg)).ok());
    }
});
