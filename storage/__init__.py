"""Device's encrypted cache: SQLCipher database, migrations, repositories, search, keyring."""
