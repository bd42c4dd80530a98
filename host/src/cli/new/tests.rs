use super::*;

fn file<'a>(files: &'a [ScaffoldFile], path: &str) -> &'a str {
    let found = files.iter().find(|f| f.path == Path::new(path));
    let found = found.unwrap_or_else(|| panic!("the scaffold should have {path}"));
    std::str::from_utf8(&found.contents).expect("text")
}

#[test]
fn scaffolds_render_every_placeholder() {
    for lang in [Lang::Rust, Lang::Python] {
        let files = Project::new("shop-notes", lang).unwrap().files().unwrap();
        for f in &files {
            let text = String::from_utf8_lossy(&f.contents);
            for placeholder in ["{{name}}", "{{crate}}", "{{wasm}}"] {
                assert!(
                    !text.contains(placeholder),
                    "{} keeps {placeholder}",
                    f.path.display()
                );
            }
            assert!(
                !f.path.to_string_lossy().ends_with(".tmpl"),
                "{}",
                f.path.display()
            );
            assert!(
                !f.path.to_string_lossy().contains("__pycache__"),
                "{}",
                f.path.display()
            );
        }
        assert!(file(&files, "wit/world.wit").contains("world service"));
    }
}

#[test]
fn rust_scaffold_points_its_sdk_copy_at_its_own_wit() {
    let files = Project::new("notes", Lang::Rust).unwrap().files().unwrap();
    assert!(file(&files, "bazaar-sdk/src/lib.rs").contains(SCAFFOLD_WIT_PATH));
    assert!(file(&files, "Cargo.toml").contains("name = \"notes\""));
    assert!(file(&files, "src/lib.rs").contains("\"/api/notes/items/{id}\""));
    assert!(
        files
            .iter()
            .any(|f| f.path == Path::new("wit/deps/http.wit"))
    );
}

#[test]
fn python_scaffold_builds_its_own_component() {
    let files = Project::new("notes", Lang::Python)
        .unwrap()
        .files()
        .unwrap();
    assert!(
        file(&files, "build.sh")
            .contains("-w bazaar:platform/service componentize app -o notes.wasm")
    );
    assert!(
        file(&files, "bazaar/__init__.py").contains("def ")
            || file(&files, "bazaar/router.py").contains("class Router")
    );
}

#[test]
fn sdk_copy_uses_the_repositorys_dependency_versions() {
    let repo: toml::Table =
        toml::from_str(include_str!("../../../../components/Cargo.toml")).unwrap();
    let copy: toml::Table = toml::from_str(include_str!(
        "../../../templates/rust/bazaar-sdk/Cargo.toml.tmpl"
    ))
    .unwrap();
    let wanted = &repo["workspace"]["dependencies"]["wit-bindgen"];
    assert_eq!(
        &copy["dependencies"]["wit-bindgen"], wanted,
        "update the SDK template's wit-bindgen"
    );
}

#[test]
fn package_names_cargo_refuses_get_a_prefix() {
    assert_eq!(package_name("reviews"), "reviews");
    assert_eq!(package_name("fn"), "service-fn");
    assert_eq!(package_name("9lives"), "service-9lives");
    assert_eq!(package_name("bazaar-sdk"), "service-bazaar-sdk");
    assert_eq!(Project::new("a-b", Lang::Rust).unwrap().wasm, "a_b.wasm");
}

#[test]
fn invalid_names_and_non_empty_directories_are_refused() {
    assert!(Project::new("Bad Name", Lang::Rust).is_err());
    let dir = std::env::temp_dir().join(format!("bazaar-new-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    ensure_usable(&dir).expect("an empty directory is fine");
    std::fs::write(dir.join("keep.txt"), "mine").unwrap();
    let error = ensure_usable(&dir).expect_err("a non-empty directory must be refused");
    assert!(
        error.to_string().contains(&dir.display().to_string()),
        "{error}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
