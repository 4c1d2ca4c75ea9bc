//! The config loader on arbitrary input: the bytes before the first NUL are the TOML file,
//! each line after it an `EMOGATE_*=value` override. A config or a `ConfigError`, never a
//! panic; an accepted config must pass its own validation again.
use emogate::config::Config;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else { return };
        let (toml, env) = text.split_once('\0').unwrap_or((text, ""));
        let env: Vec<(String, String)> = env
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // Secrets resolve from a fixed lookup: the fuzzer must not read this machine's environment.
        if let Ok(config) = Config::from_sources(Some(toml), "fuzz.toml", env, &|_| Some("secret".into())) {
            config.validate().expect("an accepted config validates");
        }
    });
}
