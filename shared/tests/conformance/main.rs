//! One conformance suite for every adapter of the two ports, and the registry's use cases
//! on each backend. The AWS adapters run against moto (`infra/test.sh` starts it).
#[path = "../common/mod.rs"]
mod common;
mod accounts;
mod faults;
mod integrity;
mod ports;
mod registry;

use accounts::*;
use integrity::*;
use ports::*;
use registry::*;

macro_rules! suite {
    ($adapter:ident, $open:path, [$($test:ident),* $(,)?]) => {
        mod $adapter {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let (port, _guard) = $open().await;
                    super::$test(port).await;
                }
            )*
        }
    };
}

/// The blob suite, on one adapter.
macro_rules! blob_suite {
    ($adapter:ident, $open:path) => {
        suite!(
            $adapter,
            $open,
            [
                blob_put_streams_50mb,
                blob_get_range_head_delete,
                blob_failed_put_leaves_nothing,
                blob_presigned_put_and_multipart,
                blob_small_and_large_replace_each_other,
            ]
        );
    };
}

/// The table suite and the registry's use cases, on one adapter.
macro_rules! table_suite {
    ($adapter:ident, $open:path) => {
        suite!(
            $adapter,
            $open,
            [
                table_conditional_put,
                table_transaction_all_or_nothing,
                table_atomic_add_concurrent,
                table_query_paged,
                table_get_many,
                table_delete_many,
                registry_projects_and_repositories,
                registry_packages_and_versions,
                overwrites_race_creates_and_deletes,
                downloads_race_roll_ups,
                registry_page_starts_expire,
                registry_history_spills_past_the_item,
                accounts_edits_never_undo_each_other,
                accounts_tokens_die_with_their_user,
                accounts_grants_die_with_what_they_name,
                accounts_bootstrap_admin_once,
            ]
        );
    };
}

blob_suite!(fs_blobs, crate::common::fs_blobs);
blob_suite!(s3_blobs, crate::common::s3_blobs);
table_suite!(embedded_table, crate::common::embedded_table);
table_suite!(dynamo_table, crate::common::dynamo_table);

/// Use cases that need both ports, on each pair of adapters.
macro_rules! backend_suite {
    ($pair:ident, $open:path, [$($test:ident),* $(,)?]) => {
        mod $pair {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let (t, b, _g) = $open().await;
                    super::$test(t, b).await;
                }
            )*
        }
    };
}

/// The integrity use cases, on one pair of adapters.
macro_rules! integrity_suite {
    ($pair:ident, $open:path) => {
        backend_suite!(
            $pair,
            $open,
            [
                completion_publishes_what_it_hashed,
                concurrent_completions_store_one_blob,
                completions_racing_rewrites_keep_a_completed_session,
                closed_sessions_take_no_bytes,
                verify_finds_bad_blobs,
                forced_delete_wins_against_commits,
                verification_off_the_request_path,
                a_marked_blob_answers_503_before_the_deadline,
                renderings_race_writes,
                a_rendering_that_lost_its_base_starts_over,
                gc_guard_with_bytes_held,
            ]
        );
    };
}

// The embedded pair as `depot serve` opens it: the blob store's rows in the table's file.
integrity_suite!(embedded_fs, crate::common::embedded_pair);
integrity_suite!(dynamo_s3, crate::common::aws_pair);
