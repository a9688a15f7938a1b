import Shell from "@/components/Shell";
import Sources from "@/components/Sources";

export default function SourcesPage() {
  return (
    <Shell>
      <Sources />
    </Shell>
  );
}
