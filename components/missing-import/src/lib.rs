//! Imports `bazaar-test:oracle/ask`, which does not exist on any host.

wit_bindgen::generate!({
    inline: "
        package bazaar-test:oracle;
        interface ask { question: func() -> string; }
        world needs-oracle {
            import ask;
            export answer: func() -> string;
        }
    ",
});

struct Component;

impl Guest for Component {
    fn answer() -> String {
        bazaar_test::oracle::ask::question()
    }
}

export!(Component);
