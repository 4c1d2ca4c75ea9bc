//! The model manifest parser (`Manifest::from_json`: serde + `validate`) on arbitrary bytes: a
//! manifest or a reason, never a panic; an accepted manifest survives a JSON round trip.
use emogate::model::Manifest;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else { return };
        if let Ok(manifest) = Manifest::from_json(text) {
            let again = serde_json::to_string(&manifest).expect("a manifest serialises");
            assert_eq!(Manifest::from_json(&again).expect("round trip"), manifest);
        }
    });
}
