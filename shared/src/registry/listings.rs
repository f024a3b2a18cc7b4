//! Listings of released versions, kept by the commits themselves, so that a catalog
//! (APS's index pages and feeds) reads what a page shows and no more.
//!
//! A version may carry a [`Listing`]: the listings it belongs to while it is released
//! (`@release`). The transaction that releases it (its creation at `@release`, or the
//! stage upgrade) writes it into each one; the transaction that deletes it takes it out.
//! Each listing is one partition, under the repository's uid:
//! - version listings hold a copy of the version, newest first, by upload time
//!   (`by_upload`) or by release time (`by_release`), with a count of what they hold;
//! - name listings (`members`) count, for each name, the released versions that name it
//!   (a catalog's vendors, an application's versions), so that a list of names is one
//!   Query of the names.
//!
//! A released version with a listing cannot be replaced: its copies would go stale.
use serde_json::Value;

use super::{PageOf, PageRequest, Registry};
use crate::model::{Listing, PackageVersion, Repository};
use crate::store::schema::{
    from_item, listed_key, listed_partition, listing_count_key, member_key, members_partition, pages_partition, to_item,
};
use crate::store::{query_all, Cond, Item, Query, TxOp};
use crate::Result;

/// The writes that put `v` into its listings (`sign` 1), released at `released`, or take
/// it out (`sign` -1), in the repository of `uid`.
pub(super) fn listing_ops(uid: &str, v: &PackageVersion, listing: &Listing, released: &str, sign: i64) -> Result<Vec<TxOp>> {
    let mut ops = Vec::new();
    let mut counted = std::collections::BTreeSet::new();
    let entries = listing.by_upload.iter().map(|l| (l, v.created_date.as_str())).chain(listing.by_release.iter().map(|l| (l, released)));
    for (name, time) in entries {
        if !counted.insert(name.clone()) {
            continue;
        }
        let key = listed_key(uid, name, time, &v.package_key, &v.name);
        ops.push(if sign > 0 { TxOp::Put { item: to_item(&key, v)?, cond: Cond::None } } else { TxOp::Delete { key, cond: Cond::None } });
        ops.push(TxOp::Update { key: listing_count_key(uid, name), set: Item::new(), add: vec![("n".into(), sign)], cond: Cond::None });
    }
    let members: std::collections::BTreeSet<&(String, String)> = listing.members.iter().collect();
    for (name, member) in members {
        ops.push(TxOp::Update { key: member_key(uid, name, member), set: Item::new(), add: vec![("n".into(), sign)], cond: Cond::None });
    }
    Ok(ops)
}

impl Registry {
    /// The names of a name listing that some released version names, in byte order.
    pub async fn listing_members(&self, repo: &Repository, listing: &str) -> Result<Vec<String>> {
        let items = query_all(&*self.table, Query::partition(members_partition(&repo.uid, listing))).await?;
        Ok(items
            .into_iter()
            .filter(|i| i.get("n").and_then(Value::as_i64).is_some_and(|n| n > 0))
            .filter_map(|i| i.get(crate::store::SK).and_then(Value::as_str).map(str::to_string))
            .collect())
    }

    /// How many versions a version listing holds.
    pub async fn listing_count(&self, repo: &Repository, listing: &str) -> Result<i64> {
        let item = self.table.get(&listing_count_key(&repo.uid, listing)).await?;
        Ok(item.and_then(|i| i.get("n").and_then(Value::as_i64)).unwrap_or(0).max(0))
    }

    /// A page of a version listing, newest first: its cost follows the page (the page
    /// starts are remembered under the repository's state, as other listings' are).
    pub async fn listing_page(&self, repo: &Repository, listing: &str, req: PageRequest) -> Result<PageOf<PackageVersion>> {
        let total = self.listing_count(repo, listing).await?;
        let query = Query::partition(listed_partition(&repo.uid, listing)).backward();
        let pages = pages_partition(&repo.project_id, &repo.name);
        let items = self.paged(pages, &format!("listed:{listing}"), &repo.state_tag(), query, req).await?;
        Ok(PageOf { request: req, total, items: items.into_iter().map(from_item).collect::<Result<_>>()? })
    }

    /// Every version of a version listing, newest first: for small ones (the packages of
    /// one application version).
    pub async fn listing_all(&self, repo: &Repository, listing: &str) -> Result<Vec<PackageVersion>> {
        let items = query_all(&*self.table, Query::partition(listed_partition(&repo.uid, listing)).backward()).await?;
        items.into_iter().map(from_item).collect()
    }
}
