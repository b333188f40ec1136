//! Listing: one origin's entries under a prefix ([`Origin::list`]), and the merge of the chain's
//! listings into one page ([`merge`]): sorted by name, the earlier origin's entry first where two
//! have the same name, cut at `max` with the name to continue after. [`OriginChain::objects`]
//! streams one origin's whole listing in byte order (for `cachectl sync`'s merge-join), holding
//! one S3 LIST page at a time.

use futures::{StreamExt, stream::BoxStream};
use object_store::{ObjectMeta, ObjectStore, path::Path};

use super::{ListedObject, Listing, Origin, OriginChain, OriginError};
use cache_proto::key::ObjectKey;

/// An object or a common prefix; both are ordered by name.
#[derive(Debug)]
pub(super) enum Entry {
    Object(ListedObject),
    Prefix(String),
}

impl Entry {
    fn name(&self) -> &str {
        match self {
            Entry::Object(o) => &o.key,
            Entry::Prefix(p) => p,
        }
    }
}

/// One page of `max` entries out of every origin's (each sorted), in origin order.
pub(super) fn merge(mut entries: Vec<Entry>, max: usize) -> Listing {
    // A stable sort keeps the earlier origin's entry first among equal names; dedup keeps it.
    entries.sort_by(|a, b| a.name().cmp(b.name()));
    entries.dedup_by(|later, earlier| later.name() == earlier.name());
    let truncated = entries.len() > max;
    entries.truncate(max);
    let next_start_after = if truncated { entries.last().map(|e| e.name().to_owned()) } else { None };
    let mut listing = Listing { next_start_after, ..Listing::default() };
    for entry in entries {
        match entry {
            Entry::Object(o) => listing.objects.push(o),
            Entry::Prefix(p) => listing.common_prefixes.push(p),
        }
    }
    listing
}

impl Origin {
    /// Volume key of an object path of this origin (`None`: not under the prefix).
    fn volume_key<'p>(&self, location: &'p Path) -> Option<&'p str> {
        let path: &str = location.as_ref();
        if self.prefix.is_root() {
            return Some(path);
        }
        path.strip_prefix(AsRef::<str>::as_ref(&self.prefix))?.strip_prefix('/')
    }

    fn entry(&self, meta: ObjectMeta) -> Option<Entry> {
        let key = self.volume_key(&meta.location)?.to_owned();
        let last_modified = meta.last_modified.into();
        Some(Entry::Object(ListedObject { key, size: meta.size, etag: meta.e_tag, last_modified }))
    }

    /// This origin's first `limit` entries (sorted) for [`OriginChain::list`]. object_store lists
    /// whole path segments, so the listing starts at the prefix's last `/` and is filtered here.
    pub(super) async fn list(
        &self,
        prefix: &str,
        delimiter: bool,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entry>, OriginError> {
        let dir = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        let base = if dir.is_empty() {
            self.prefix.clone()
        } else {
            match ObjectKey::new(dir).ok().and_then(|k| self.object_path(&k).ok()) {
                Some(path) => path,
                None => return Ok(Vec::new()), // no valid key lies under it
            }
        };
        let base = (!base.is_root()).then_some(&base);
        let wanted = |name: &str| name.starts_with(prefix) && after.is_none_or(|a| name > a);
        let mut out = Vec::new();
        if delimiter {
            let listed = match self.store.list_with_delimiter(base).await {
                Ok(listed) => listed,
                Err(object_store::Error::NotFound { .. }) => return Ok(out),
                Err(e) => return Err(self.other(prefix, e)),
            };
            let dirs = listed
                .common_prefixes
                .iter()
                .filter_map(|p| self.volume_key(p).map(|k| Entry::Prefix(format!("{k}/"))));
            out.extend(
                listed.objects.into_iter().filter_map(|m| self.entry(m)).chain(dirs).filter(|e| wanted(e.name())),
            );
        } else {
            let offset = after.and_then(|a| ObjectKey::new(a).ok()).and_then(|k| self.object_path(&k).ok());
            let mut stream = match &offset {
                Some(offset) => self.store.list_with_offset(base, offset),
                None => self.store.list(base),
            };
            while let Some(meta) = stream.next().await {
                let meta = match meta {
                    Ok(meta) => meta,
                    Err(object_store::Error::NotFound { .. }) => break,
                    Err(e) => return Err(self.other(prefix, e)),
                };
                let Some(entry) = self.entry(meta) else { continue };
                if wanted(entry.name()) {
                    out.push(entry);
                    if self.sorted_list && out.len() >= limit {
                        break;
                    }
                } else if self.sorted_list && entry.name() > prefix && !entry.name().starts_with(prefix) {
                    break; // sorted: every later name is past the prefix too
                }
            }
        }
        out.sort_by(|a, b| a.name().cmp(b.name()));
        out.truncate(limit);
        Ok(out)
    }
}

/// One origin's objects in byte order of their keys.
pub type ObjectStream = BoxStream<'static, Result<ListedObject, OriginError>>;

impl OriginChain {
    /// Every object of origin `index` whose key starts with `prefix` and sorts after `after`, in
    /// byte order, read lazily: an S3 origin costs one LIST request per 1000 keys and holds one
    /// page of them, however many there are. A `file://` origin does not list in order, so it
    /// is read whole and sorted (tests and small volumes only).
    pub fn objects(&self, index: usize, prefix: &str, after: Option<&str>) -> Result<ObjectStream, OriginError> {
        let Some(origin) = self.origins.get(index) else {
            return Err(OriginError::Config { url: String::new(), message: format!("no origin {index}") });
        };
        let origin = origin.clone();
        let prefix = prefix.to_owned();
        let after = after.map(str::to_owned);
        let dir = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        let base = if dir.is_empty() {
            origin.prefix.clone()
        } else {
            match ObjectKey::new(dir).ok().and_then(|k| origin.object_path(&k).ok()) {
                Some(path) => path,
                None => return Ok(futures::stream::empty().boxed()),
            }
        };
        let base = (!base.is_root()).then_some(base);
        let offset = after.as_deref().and_then(|a| ObjectKey::new(a).ok()).and_then(|k| origin.object_path(&k).ok());
        let listed = match &offset {
            Some(offset) => origin.store.list_with_offset(base.as_ref(), offset),
            None => origin.store.list(base.as_ref()),
        };
        let sorted = origin.sorted_list;
        let (keep, stop) = (prefix.clone(), prefix);
        let objects = listed
            .map(move |meta| match meta {
                Ok(meta) => match origin.entry(meta) {
                    Some(Entry::Object(o)) => Ok(Some(o)),
                    _ => Ok(None),
                },
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(origin.other(origin.label.clone(), e)),
            })
            .filter_map(|r| async move { r.transpose() })
            // Sorted: the first name past the prefix ends the walk (every later one is past too).
            .take_while(move |r| {
                let go = !sorted
                    || r.as_ref().is_ok_and(|o| o.key.as_str() <= stop.as_str() || o.key.starts_with(&stop))
                    || r.is_err();
                async move { go }
            })
            .filter(move |r| {
                let go = r
                    .as_ref()
                    .map_or(true, |o| o.key.starts_with(&keep) && after.as_deref().is_none_or(|a| o.key.as_str() > a));
                async move { go }
            });
        if sorted {
            return Ok(objects.boxed());
        }
        let filtered = objects;
        Ok(futures::stream::once(async move {
            let mut all: Vec<Result<ListedObject, OriginError>> = filtered.collect().await;
            all.sort_by(|a, b| match (a, b) {
                (Ok(a), Ok(b)) => a.key.cmp(&b.key),
                (Err(_), _) => std::cmp::Ordering::Less,
                (_, Err(_)) => std::cmp::Ordering::Greater,
            });
            futures::stream::iter(all)
        })
        .flatten()
        .boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{OriginChain, tests::file_origin};
    use super::*;

    fn names(l: &Listing) -> Vec<&str> {
        let mut all: Vec<&str> =
            l.objects.iter().map(|o| o.key.as_str()).chain(l.common_prefixes.iter().map(String::as_str)).collect();
        all.sort_unstable();
        all
    }

    #[tokio::test]
    async fn list_merges_origins_filters_by_string_prefix_and_pages() {
        let (_a, first) = file_origin(&[("j/c/0/1_0_4", b"AAAA"), ("j/c/0/2_0_4", b"BBBB"), ("j/meta", b"m")]);
        let (_b, second) = file_origin(&[("j/c/0/1_0_4", b"xx"), ("j/c/1/3_0_4", b"CCCC"), ("k/x", b"k")]);
        let chain = OriginChain::from_config(&[first, second]).expect("chain");
        let all = chain.list(None, false, None, 100).await.expect("list");
        assert_eq!(names(&all), ["j/c/0/1_0_4", "j/c/0/2_0_4", "j/c/1/3_0_4", "j/meta", "k/x"]);
        assert_eq!(all.objects[0].size, 4, "the first origin's copy wins");
        assert!(all.next_start_after.is_none());
        let some = chain.list(Some("j/c/0/1"), false, None, 100).await.expect("list");
        assert_eq!(names(&some), ["j/c/0/1_0_4"]);
        let page = chain.list(Some("j/"), false, None, 2).await.expect("list");
        assert_eq!(names(&page), ["j/c/0/1_0_4", "j/c/0/2_0_4"]);
        let next = chain.list(Some("j/"), false, page.next_start_after.as_deref(), 2).await.expect("list");
        assert_eq!(names(&next), ["j/c/1/3_0_4", "j/meta"]);
        assert!(next.next_start_after.is_none());
        let dirs = chain.list(Some("j/"), true, None, 100).await.expect("list");
        assert_eq!((dirs.common_prefixes.as_slice(), names(&dirs)), (&["j/c/".to_owned()][..], vec!["j/c/", "j/meta"]));
        let top = chain.list(None, true, Some("j/"), 100).await.expect("list");
        assert_eq!(names(&top), ["k/"]);
        assert!(chain.list(Some("nothing/here"), true, None, 10).await.expect("list").objects.is_empty());
    }

    #[tokio::test]
    async fn objects_streams_one_origin_in_order_under_a_prefix_after_a_key() {
        let (_a, first) = file_origin(&[("j/c/1", b"1"), ("j/c/0", b"0"), ("j/d/2", b"22"), ("k/3", b"3")]);
        let (_b, second) = file_origin(&[("j/c/5", b"5")]);
        let chain = OriginChain::from_config(&[first, second]).expect("chain");
        let keys = |after: Option<&'static str>, prefix: &'static str, index: usize| {
            let chain = &chain;
            async move {
                let stream = chain.objects(index, prefix, after).expect("stream");
                stream.map(|o| o.expect("object").key).collect::<Vec<_>>().await
            }
        };
        assert_eq!(keys(None, "", 0).await, ["j/c/0", "j/c/1", "j/d/2", "k/3"]);
        assert_eq!(keys(None, "j/", 0).await, ["j/c/0", "j/c/1", "j/d/2"]);
        assert_eq!(keys(Some("j/c/0"), "j/c", 0).await, ["j/c/1"]);
        assert_eq!(keys(None, "j/", 1).await, ["j/c/5"], "one origin only");
        assert!(chain.objects(2, "", None).is_err());
    }
}
