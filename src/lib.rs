pub use sinter_device; pub use sinter_model;
