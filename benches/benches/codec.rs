//! Encode + decode throughput per codec, plain and with zstd, AES-256-GCM and both, for
//! 100-byte and 10-KiB events. The baseline of each group is the plain codec.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eventsmith_benches::{BenchEvent, Credited};
use eventsmith_cipher::{AesGcmCipher, Key, Keyring, Zstd};
use eventsmith_core::{Envelope, Mapper};
use eventsmith_mapper::{CodecId, Encrypt, EventMapper};
use uuid::Uuid;

fn mapper(codec: CodecId, zstd: bool, aes: bool) -> EventMapper<BenchEvent> {
    let mut b = EventMapper::<BenchEvent>::builder().codec(codec);
    if zstd {
        b = b.compressor(Arc::new(Zstd::new().min_size(64)));
    }
    if aes {
        b = b.cipher(
            Arc::new(AesGcmCipher::new(Keyring::new("bench", Key::generate()))),
            Encrypt::All,
        );
    }
    b.build().unwrap()
}

fn benches(c: &mut Criterion) {
    for (label, note_len) in [("100B", 80), ("10KiB", 10 * 1024)] {
        // A note of words, so that compression has something to find, as in real events.
        let words = [
            "deposit", "account", "customer", "transfer", "ledger", "balance",
        ];
        let note: String = (0..note_len)
            .map(|i| words[i % words.len()])
            .collect::<Vec<_>>()
            .join(" ")[..note_len]
            .to_owned();
        let envelope = Envelope {
            originator_id: Uuid::new_v4(),
            version: 7,
            timestamp: time::OffsetDateTime::now_utc(),
            metadata: Default::default(),
            event: BenchEvent::from(Credited { amount: 42, note }),
        };
        let codecs: Vec<(&str, CodecId)> = [
            ("json", CodecId::Json),
            ("postcard", CodecId::Postcard),
            ("bincode", CodecId::Bincode),
        ]
        .into_iter()
        .filter(|(_, c)| c.is_available())
        .collect();
        for (name, codec) in codecs {
            let mut g = c.benchmark_group(format!("codec-{label}-{name}"));
            g.throughput(Throughput::Elements(1));
            for (variant, zstd, aes) in [
                ("plain", false, false),
                ("zstd", true, false),
                ("aes-gcm", false, true),
                ("zstd+aes-gcm", true, true),
            ] {
                let m = mapper(codec, zstd, aes);
                g.bench_function(variant, |b| {
                    b.iter(|| {
                        let item = m.encode(&envelope).unwrap();
                        m.decode(&item).unwrap()
                    })
                });
            }
            g.finish();
        }
    }
}

criterion_group! { name = codec; config = eventsmith_benches::criterion(); targets = benches }
criterion_main!(codec);
