import Shell from "@/components/Shell";
import SourceDetail from "@/components/SourceDetail";

export default function SourcePage() {
  return (
    <Shell>
      <SourceDetail />
    </Shell>
  );
}
