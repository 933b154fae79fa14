#![cfg(loom)]
#[test]
fn m() {
    loom::model(|| {
        assert_eq!(multiopen::f(), 1);
    });
}
