//! The classic worked example: create an aggregate, change it, save it, load it back, load
//! a historical version, discard it.
//!
//! Run with `cargo run --example worked_example [PATH]`: the events go to the SQLite file at
//! PATH, or to a file in a fresh temporary directory that is removed afterwards.

use eventsmith::EventMapper;
use eventsmith::SqliteStore;
use eventsmith::{EventStore, LoadError, Repository};
use eventsmith_examples::example::{Example, ExampleEvent, create_new_example};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let path = match std::env::args_os().nth(1) {
        Some(path) => path.into(),
        None => temp.path().join("worked_example.db"),
    };
    let store = SqliteStore::open(&path).await?;
    println!("store: SQLite file {}", path.display());
    let mapper = EventMapper::<ExampleEvent>::builder().build()?;
    let repository = Repository::<Example, _>::new(EventStore::new(store.clone(), mapper));

    // Create a new aggregate with the factory, and save it.
    let mut example = create_new_example("bar")?;
    repository.save(&mut example).await?;
    let id = example.id();
    println!(
        "created {id} with foo = {:?} (version {})",
        example.state().foo,
        example.version()
    );

    // Change an attribute and save.
    example.execute(|e| e.change_foo("baz"))?;
    repository.save(&mut example).await?;
    println!(
        "changed foo to {:?} (version {})",
        example.state().foo,
        example.version()
    );

    // Load it back.
    let loaded = repository.get(id).await?;
    assert_eq!(loaded.state(), example.state());
    println!(
        "loaded: foo = {:?} at version {}, created {}",
        loaded.state().foo,
        loaded.version(),
        loaded.created_on()
    );

    // Load a historical version.
    let old = repository.get_at(id, 1).await?;
    assert_eq!(old.state().foo, "bar");
    println!("version 1 had foo = {:?}", old.state().foo);

    // Discard it: it rejects commands and no longer loads.
    example.execute(|e| e.discard())?;
    repository.save(&mut example).await?;
    assert!(example.execute(|e| e.change_foo("qux")).is_err());
    match repository.get(id).await {
        Err(LoadError::Discarded { .. }) => {
            println!("discarded: loading {id} now says it was discarded")
        }
        other => anyhow::bail!("expected a discarded aggregate, got {other:?}"),
    }
    assert!(!repository.contains(id).await?);
    store.close().await;
    println!("worked example complete");
    Ok(())
}
