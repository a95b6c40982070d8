//! Costs on every authenticated request and every profile read:
//! - `token/verify_first`: checking an access token the first time (HS256 signature, expiry,
//!   claims); `token/verify`: checking it again, as every later request does (remembered);
//! - `pii/blind_index_and_open_profile`: the email blind index plus decrypting a profile's
//!   four sealed fields, what a login lookup and `GET /users/me` do besides the store;
//! - `password/argon2_verify`: one password check with the OWASP defaults (the floor of a login).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hurry_api::auth::{PasswordHasher, TokenKeys};
use hurry_api::pii::{parse_keys, Pii};
use hurry_persistence::{SealedColumn, UserRecord};

fn bench_token(criterion: &mut Criterion) {
    let keys = TokenKeys::new(&[42; 32], 900);
    let token = keys
        .issue(
            12_345,
            &["customer".into(), "seller".into()],
            Some("family"),
        )
        .expect("token");
    let mut group = criterion.benchmark_group("token");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify", |bencher| {
        bencher.iter(|| keys.verify(std::hint::black_box(&token)).expect("valid"))
    });
    group.bench_function("verify_first", |bencher| {
        bencher.iter_batched(
            || TokenKeys::new(&[42; 32], 900),
            |fresh| fresh.verify(std::hint::black_box(&token)).expect("valid"),
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn bench_pii(criterion: &mut Criterion) {
    let keys = parse_keys(&format!("1:{}", "ab".repeat(32))).expect("keys");
    let pii = Pii::new(&keys, 1, [9; 32]).expect("pii");
    let stored = UserRecord {
        id: 1,
        email: pii.seal("alice.kim@hurry.test", SealedColumn::UserEmail, 1),
        password_hash: String::new(),
        name: pii.seal("Alice Kim", SealedColumn::UserName, 1),
        phone: Some(pii.seal("010-9876-5432", SealedColumn::UserPhone, 1)),
        address: Some(pii.seal(
            "1 Sejong-daero, Jongno-gu, Seoul",
            SealedColumn::UserAddress,
            1,
        )),
        email_verified: true,
        roles: vec!["customer".into()],
        created_at: chrono::Utc::now(),
    };
    let mut group = criterion.benchmark_group("pii");
    group.throughput(Throughput::Elements(1));
    group.bench_function("blind_index_and_open_profile", |bencher| {
        bencher.iter(|| {
            let index = pii.email_index(std::hint::black_box("alice.kim@hurry.test"));
            let profile = pii.open_user(stored.clone()).expect("opens");
            (index, profile)
        })
    });
    group.bench_function("seal_one_field", |bencher| {
        bencher.iter(|| {
            pii.seal(
                std::hint::black_box("010-9876-5432"),
                SealedColumn::UserPhone,
                1,
            )
        })
    });
    group.finish();
}

fn bench_password(criterion: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let hasher = PasswordHasher::new(19_456, 2, 1).expect("OWASP parameters");
    let stored = runtime
        .block_on(hasher.hash("correct horse battery".into()))
        .expect("hash");
    let mut group = criterion.benchmark_group("password");
    group.sample_size(10);
    group.bench_function("argon2_verify", |bencher| {
        bencher.to_async(&runtime).iter(|| async {
            hasher
                .verify("correct horse battery".into(), Some(stored.clone()))
                .await
                .expect("verifies")
        })
    });
    group.finish();
}

criterion_group!(benches, bench_token, bench_pii, bench_password);
criterion_main!(benches);
