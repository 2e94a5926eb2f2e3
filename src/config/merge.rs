//! Upstream's deep merge: mappings merge key by key, everything else (lists included) is
//! replaced wholesale, and a `null` in the override is skipped so that an empty YAML key
//! never clobbers a default.

use crate::yaml::{Node, Value};

/// Merges `over` into `base` in place.
pub fn merge_into(base: &mut Node, over: &Node) {
    let Value::Map(over_map) = &over.value else {
        if !over.is_null() {
            *base = over.clone();
        }
        return;
    };
    if base.as_map().is_none() {
        // Like `deepcopy(value)` upstream: nulls inside a copied mapping survive.
        *base = over.clone();
        return;
    }
    let base_map = base.as_map_mut().expect("checked above");
    for (key, value) in over_map {
        if value.is_null() {
            continue;
        }
        match base_map.get_mut(key) {
            Some(existing) if existing.as_map().is_some() && value.as_map().is_some() => merge_into(existing, value),
            Some(existing) => *existing = value.clone(),
            None => {
                base_map.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Returns `base ⊕ over` without touching either.
pub fn merged(base: &Node, over: &Node) -> Node {
    let mut out = base.clone();
    merge_into(&mut out, over);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::load_str;

    fn y(s: &str) -> Node {
        load_str(s, "t").unwrap()
    }

    #[test]
    fn dicts_merge_lists_replace_nulls_skip() {
        let base = y("a: {x: 1, y: [1, 2]}\nb: keep\nc: {d: 1}\n");
        let over = y("a: {y: [3], z: 2}\nb: null\nc: 5\nn: {p: null}\n");
        let m = merged(&base, &over);
        let want = y("a: {x: 1, y: [3], z: 2}\nb: keep\nc: 5\nn: {p: null}\n");
        assert_eq!(m, want);
    }

    #[test]
    fn order_of_keys_is_base_then_new() {
        let m = merged(&y("b: 1\na: 1\n"), &y("c: 1\nb: 2\n"));
        assert_eq!(m.as_map().unwrap().keys().collect::<Vec<_>>(), ["b", "a", "c"]);
    }

    #[test]
    fn origins_follow_the_winning_layer() {
        let base = load_str("a: 1\nb: 2\n", "defaults.yaml").unwrap();
        let over = load_str("b: 3\n", "scenario.yaml").unwrap();
        let m = merged(&base, &over);
        assert_eq!(m.get("a").unwrap().origin.file.as_deref(), Some("defaults.yaml"));
        assert_eq!(m.get("b").unwrap().origin.file.as_deref(), Some("scenario.yaml"));
    }
}
