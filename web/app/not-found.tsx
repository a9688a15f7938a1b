import Link from "next/link";

export default function NotFound() {
  return (
    <main className="center">
      <h1>No such page</h1>
      <p>
        <Link href="/">Back to the pipelines</Link>
      </p>
    </main>
  );
}
