//! Loaders on the real files: counts from the publishers' documentation and SOURCE.md.

use hansa_node::data::movielens::{
    load_100k_split, read_100k_items, read_100k_users, read_ratings, RatingsFormat,
};
use hansa_node::data::split::{leave_last_out, sample_negatives};
use hansa_node::data::{data_dir, RatingsDataset, Vocabulary};
use hansa_node::model::popularity::most_popular_metrics;
use std::sync::Arc;

#[test]
fn movielens_100k_files_have_their_documented_counts() {
    let dir = data_dir().join("movielens-100k");
    let mut vocab = Vocabulary::default();
    let all = read_ratings(&dir.join("u.data"), RatingsFormat::Tab, &mut vocab).unwrap();
    assert_eq!(
        (all.len(), vocab.users.len(), vocab.items.len()),
        (100_000, 943, 1_682)
    );
    let fives = all.iter().filter(|r| r.value == 5.0).count();
    assert_eq!(fives, 21_201);

    let (train, test) = load_100k_split(&dir, "u1").unwrap();
    assert_eq!((train.len(), test.len()), (80_000, 20_000));
    assert!(Arc::ptr_eq(&train.vocab, &test.vocab));

    let movies = read_100k_items(&dir.join("u.item")).unwrap();
    assert_eq!(movies.len(), 1_682);
    assert_eq!(movies[542].title, "Misérables, Les (1995)");
    let users = read_100k_users(&dir.join("u.user")).unwrap();
    assert_eq!(users.len(), 943);
    assert_eq!(
        (users[0].age, users[0].gender, users[0].occupation.as_str()),
        (24, 'M', "technician")
    );
}

#[test]
fn ncf_leave_one_out_on_movielens() {
    // The NCF protocol: each user's latest rating is held out and ranked among 99 movies
    // the user never rated.
    let dir = data_dir().join("movielens-100k");
    let mut vocab = Vocabulary::default();
    let all = read_ratings(&dir.join("u.data"), RatingsFormat::Tab, &mut vocab).unwrap();
    let data = RatingsDataset::new(all, Arc::new(vocab));
    let (train, held) = leave_last_out(&data, 1);
    assert_eq!(held.len(), 943);
    assert_eq!(
        train.len() + 943,
        100_000,
        "each user rates a movie once, so one record per user leaves"
    );
    let cases = sample_negatives(&data, &held, 99, 1).unwrap();
    assert!(cases
        .iter()
        .all(|c| c.negatives.len() == 99 && !c.negatives.contains(&c.positive)));
    // Popularity is far better than the 10 % a random ranking hits.
    let pop = most_popular_metrics(&train, &cases).unwrap();
    assert!(pop[0].value > 0.3, "{pop:?}");
}
