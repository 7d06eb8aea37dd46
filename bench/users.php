<?php
// bench/users.php: the classic stack's `GET /api/users/{id}` for bench/web.sh.
//
// Runs under PHP-FPM behind nginx. Answers with the same JSON body as rampart's web tier
// (crates/web/src/app.rs, `user_json`): keys in serde_json's order (sorted), `created_at`
// as RFC 3339 in UTC with trailing zeros of the fraction dropped (the `time` crate's
// format), and the same error bodies for a bad id (400) and a missing user (404).
//
// The connection comes from the pool's environment (php-fpm `env[...]`): CLASSIC_DB_DSN,
// CLASSIC_DB_USER, CLASSIC_DB_PASS, CLASSIC_DB_CA. It is a persistent PDO connection over
// TLS, verifying db2's certificate against the run's CA, so each FPM child keeps one
// connection to the replica, as rampart's web servers keep a pool.

function reply(int $status, array $body): void
{
    http_response_code($status);
    header('Content-Type: application/json');
    ksort($body, SORT_STRING);
    echo json_encode($body, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_LINE_TERMINATORS);
}

function fail(int $status, string $error, string $message, string $field = ''): void
{
    $body = ['error' => $error, 'message' => $message];
    if ($field !== '') {
        $body['field'] = $field;
    }
    reply($status, $body);
}

// "2026-11-23 10:00:00.120000" (DATETIME(6), stored as UTC) -> "2026-11-23T10:00:00.12Z"
function rfc3339(string $dt): string
{
    $s = str_replace(' ', 'T', $dt);
    if (str_contains($s, '.')) {
        $s = rtrim(rtrim($s, '0'), '.');
    }
    return $s . 'Z';
}

$path = parse_url($_SERVER['REQUEST_URI'] ?? '', PHP_URL_PATH) ?: '';
$raw = substr($path, strlen('/api/users/'));
$id = ltrim($raw, '0');
// rampart's parse_id: 1 to 20 ASCII digits, a u64, at least 1.
if (!preg_match('/^[0-9]{1,20}$/', $raw) || $id === ''
    || (strlen($id) === 20 && strcmp($id, '18446744073709551615') > 0)) {
    fail(400, 'invalid_id', 'must be a positive integer', 'id');
    return;
}

try {
    $db = new PDO(getenv('CLASSIC_DB_DSN'), getenv('CLASSIC_DB_USER'), getenv('CLASSIC_DB_PASS'), [
        PDO::ATTR_PERSISTENT => true,
        PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
        PDO::MYSQL_ATTR_SSL_CA => getenv('CLASSIC_DB_CA'),
        PDO::MYSQL_ATTR_SSL_VERIFY_SERVER_CERT => true,
    ]);
    $st = $db->prepare('SELECT id, name, email, created_at FROM users WHERE id = ?');
    $st->execute([$id]);
    $row = $st->fetch(PDO::FETCH_ASSOC);
    $st->closeCursor();
} catch (PDOException $e) {
    error_log('users.php: database: ' . $e->getMessage());
    header('Retry-After: 1');
    fail(503, 'database_unavailable', 'the database could not answer');
    return;
}

if ($row === false) {
    fail(404, 'not_found', 'no such user', 'id');
    return;
}
reply(200, [
    'id' => (int) $row['id'],
    'name' => $row['name'],
    'email' => $row['email'],
    'created_at' => rfc3339($row['created_at']),
]);
