//! ELF → image builder (to be written).
