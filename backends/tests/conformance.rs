//! The conformance suite on every engine of the list that this build compiles in, each
//! opened by its scratch URL: files and directories in a temporary directory, a store of
//! its own on a server (PostgreSQL: `EVENTKV_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`), removed afterwards. A server that does not
//! answer skips its engine's cases loudly, and fails them under `CI=true`.

mod common;

macro_rules! conformance_per_engine {
    ($($feature:literal => $module:ident [$($scheme:literal),+]),+ $(,)?) => {$(
        #[cfg(feature = $feature)]
        mod $module {
            use super::common;

            eventkv::conformance_tests!(
                tokio::test(flavor = "multi_thread", worker_threads = 2),
                match common::ScratchFactory::new($feature, module_path!()).await {
                    Some(factory) => factory,
                    None => return,
                }
            );
        }
    )+};
}

eventkv_backends::engines!(conformance_per_engine);
