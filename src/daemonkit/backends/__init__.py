"""OS service-manager backends behind one protocol (see ``base.Backend``)."""
