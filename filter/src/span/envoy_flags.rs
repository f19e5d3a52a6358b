//! Envoy's `response.flags` attribute is a bit-vector; access logs and operators know the short
//! codes (`UF`, `UT`, ...). Bit positions follow Envoy's legacy ResponseFlag order, which the
//! attribute keeps for compatibility.

const CODES: [&str; 30] = [
    "LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE", "DC",
    "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF", "DO", "DR",
    "UDO",
];

/// Writes the comma-joined short codes of `bits` into `out` (cleared first); empty when none.
pub fn short_codes(bits: u64, out: &mut String) {
    out.clear();
    for (bit, code) in CODES.iter().enumerate() {
        if bits & (1 << bit) != 0 {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(code);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_known_bits() {
        let cases: &[(u64, &str)] = &[
            (0, ""),
            (0x20, "UF"),
            (0x4, "UT"),
            (0x100, "NR"),
            (0x20 | 0x8000, "UF,URX"),
            (0x4000, "DC"),
            (1 << 40, ""),
        ];
        let mut out = String::new();
        for (bits, expected) in cases {
            short_codes(*bits, &mut out);
            assert_eq!(out, *expected, "bits {bits:#x}");
        }
    }
}
